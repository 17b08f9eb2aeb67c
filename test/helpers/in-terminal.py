# Run a command on a pseudo-terminal, type one line into it once it has written a prompt (text ending in
# ": "; within 15 s), and print (as JSON) all it wrote to the terminal and its exit status. For tests of
# what a command does on a terminal. (It typed after a bare second: a loaded machine had not started the
# command by then, and the terminal echoed the line.)
# Usage: python3 in-terminal.py <line to type> <command> [args...]
import json, os, pty, select, sys, time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out = b""


def read_for(seconds, until=lambda: False):
    global out
    end = time.time() + seconds
    while time.time() < end and not until():
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                return


read_for(15.0, lambda: out.endswith(b": "))
os.write(fd, sys.argv[1].encode() + b"\r")
# (Until the command closes the terminal, i.e. exits: reading it then fails.)
read_for(15.0)
_, status = os.waitpid(pid, 0)
print(json.dumps({"output": out.decode("utf8", "replace"), "code": os.waitstatus_to_exitcode(status)}))
