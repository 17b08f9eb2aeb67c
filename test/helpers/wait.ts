// Wait on conditions with a deadline, never on bare sleeps.

export async function waitFor<T>(
  condition: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 15_000,
  pollMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Resolves with the arguments of the first `event` for which `test` holds, or rejects at the deadline. */
export function nextEvent<A extends unknown[]>(
  emitter: { on(event: string, fn: (...args: A) => void): unknown; off(event: string, fn: (...args: A) => void): unknown },
  event: string,
  test: (...args: A) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<A> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    const listener = (...args: A) => {
      if (!test(...args)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    };
    emitter.on(event, listener);
  });
}

/**
 * What `attempt` came to within `timeoutMs`: "resolved", its error's message, or "hung". When it hung,
 * `release` is called to let the stuck operation go (so that a failing test ends instead of hanging).
 */
export async function outcomeWithin(attempt: Promise<unknown>, timeoutMs: number, release: () => void): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<string>((resolve) => (timer = setTimeout(() => resolve("hung"), timeoutMs)));
  const outcome = await Promise.race([attempt.then(() => "resolved", (error: Error) => error.message), hung]);
  clearTimeout(timer);
  if (outcome === "hung") release();
  return outcome;
}
