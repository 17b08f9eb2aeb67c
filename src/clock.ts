// The clock for timeouts, expiries and retries: monotonic. Date.now() follows the wall clock, which NTP or a
// VM resumed from suspend may step back or forward: a client whose clock went back an hour heard "silence"
// as negative and never gave up on a dead server; a server whose clock jumped ahead expired every idle
// client at once (a review). Never compared with file times (those are the wall clock's: see isRacy).
export function monotonic(): number {
  return performance.now();
}
