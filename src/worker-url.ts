// Where a worker thread's module is. Tests run the TypeScript sources (vitest) but Node 20 runs a worker
// only from JavaScript, so a module running from src/ starts the build's copy of its worker (the test
// command builds first).

/** The compiled worker `name` (a sibling module of `here`, the caller's import.meta.url). */
export function workerUrl(here: string, name: string): URL {
  const url = new URL(`./${name}.js`, here);
  if (!new URL(here).pathname.endsWith(".ts")) return url;
  // (…/src/x/y.ts → …/dist/src/x/name.js: the last /src/ on the path is ours.)
  const at = url.pathname.lastIndexOf("/src/");
  return new URL(`${url.pathname.slice(0, at)}/dist${url.pathname.slice(at)}`, url);
}
