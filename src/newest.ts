// The bounded memories of recent names (partials kept, deltas cut, fingerprints, names withdrawn): an
// insertion-ordered Map or Set where an entry set again becomes the newest, and past the bound the oldest
// is forgotten first.

/** Set `key` to `value` as the newest entry of `map`, forgetting the oldest while it holds more than `max`. */
export function setNewest<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value!);
}

/** Add `key` as the newest entry of `set`, forgetting the oldest while it holds more than `max`. */
export function addNewest<K>(set: Set<K>, key: K, max: number): void {
  set.delete(key);
  set.add(key);
  while (set.size > max) set.delete(set.values().next().value!);
}
