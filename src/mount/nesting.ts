// Two mounts whose directories nest. A mount's directory that is another's, or inside another's, must be
// published where the outer mount would show it (share as /, share/hr as /hr: the inner alias shadows that
// part of the outer mount). Under any other alias its files would be published twice, and an account
// allowed only the outer mount would read them through it (a review: share as /pub for bob, share/hr as
// /hr for hr; bob got /pub/hr/*). Inside a hidden directory of the other is fine: hidden files are not
// published. Checked for the config's [[mount]]s and for every Server.publish().

import path from "node:path";
import { isUnpublished, joinVirtual } from "../paths.js";

export interface NestingMount {
  /** As the user named it (for the message). */
  readonly directory: string;
  /** Its real path. */
  readonly root: string;
  readonly alias: string;
}

/** Why `inner` may not be published beside `outer` (its directory is, or is inside, the outer's), or undefined. */
export function nestingProblem(inner: NestingMount, outer: NestingMount): string | undefined {
  const rel = path.relative(outer.root, inner.root);
  if (rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return undefined;
  const relative = rel.split(path.sep).join("/");
  if (relative !== "" && isUnpublished(relative)) return undefined;
  const shown = relative === "" ? outer.alias : joinVirtual(outer.alias, relative);
  if (relative !== "" && shown === inner.alias) return undefined;
  return `${inner.directory} (mount ${inner.alias}) is ${relative === "" ? "the directory" : "inside the directory"} of mount ${outer.alias}, which would publish it${relative === "" ? "" : ` as ${shown}`} too: alias it ${relative === "" ? "once" : shown}, or publish directories that do not nest`;
}
