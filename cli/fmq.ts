#!/usr/bin/env node
// The `fmq` command. The signal handlers go in first (signals.ts has no imports), then the command line
// itself (main.ts), whose imports (zeromq's native addon among them) take a tenth of a second or more.

import "./signals.js";

await import("./main.js");
