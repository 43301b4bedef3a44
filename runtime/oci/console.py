"""process.terminal: a pseudo-terminal made inside the container, whose master end is
handed to the caller over --console-socket (SCM_RIGHTS), as runc does."""

from __future__ import annotations

import _socket
import fcntl
import os
import stat
import struct
import termios

from .errors import SetupError
from .linux import MS_BIND, RESOLVE_IN_ROOT, RESOLVE_NO_SYMLINKS, SYS, Syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def connect(path: str) -> int:
    """Connect to the caller's console socket (done on the host side, before pivot_root)."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise SetupError(f"--console-socket {path}: {e.strerror}") from None
    return int(s.detach())


def send_fd(sock_fd: int, fd: int, name: str) -> None:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, sock_fd)
    try:
        s.sendmsg([name.encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                     struct.pack("i", fd))])
    finally:
        s.detach()


def recv_fd(sock_fd: int) -> int:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, sock_fd)
    try:
        _, anc, _, _ = s.recvmsg(4096, _socket.CMSG_SPACE(4))
    finally:
        s.detach()
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            return int(struct.unpack("i", data[:4])[0])
    raise SetupError("console socket: no file descriptor received")


def setup(sock_fd: int, process: dict[str, Any], *, mount_console: bool,
          sys: Syscalls = SYS) -> None:
    """In the container (after pivot_root): make a pty, send its master to the caller,
    make the slave our controlling terminal and stdio, and /dev/console."""
    master, slave = os.openpty()
    try:
        size = process.get("consoleSize")
        if size:
            fcntl.ioctl(slave, termios.TIOCSWINSZ,
                        struct.pack("HHHH", size["height"], size["width"], 0, 0))
        name = os.ttyname(slave)
        if mount_console:
            _mount_console(name, sys=sys)
        send_fd(sock_fd, master, "/dev/ptmx")
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for n in (0, 1, 2):
            os.dup2(slave, n)
    finally:
        os.close(master)
        if slave > 2:
            os.close(slave)
        os.close(sock_fd)


def _mount_console(slave_path: str, *, sys: Syscalls) -> None:
    # /dev/console must be a plain file we made, never a link the image planted that
    # would carry the bind mount elsewhere (CVE-2025-52565).
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dev = sys.openat2(root, "dev", os.O_PATH | os.O_DIRECTORY,
                          RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)
        try:
            try:
                os.close(os.open("console", os.O_CREAT | os.O_EXCL | os.O_WRONLY
                                 | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dev))
            except FileExistsError:
                pass
            fd = sys.openat2(dev, "console", os.O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)
            try:
                mode = os.fstat(fd).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
                    raise SetupError("/dev/console in the rootfs is not a file or device")
                sys.mount(slave_path, f"/proc/self/fd/{fd}", None, MS_BIND, None)
            finally:
                os.close(fd)
        finally:
            os.close(dev)
    finally:
        os.close(root)


class Listener:
    """A console socket of our own, for `run` in the foreground with a terminal: the
    container's pty master comes back to us and we relay it to our own stdio."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "console.sock")
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive(self) -> int:
        conn, _ = self.sock._accept()  # type: ignore[attr-defined]  # C-level: (fd, addr)
        try:
            return recv_fd(conn)
        finally:
            os.close(conn)

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def relay(master: int) -> None:
    """Copy our stdin to the pty and the pty to our stdout until the pty closes (every
    process of the container has exited); our terminal is raw meanwhile."""
    import select
    import tty

    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    if stdin_tty:
        _copy_size(0, master)
        tty.setraw(0, termios.TCSADRAIN)  # not TCSAFLUSH: keep what was typed ahead
    try:
        fds = [master, 0]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [], 0.1)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave end is closed
                    return
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    fds.remove(0)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _copy_size(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass
