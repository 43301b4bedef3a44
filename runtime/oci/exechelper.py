"""The last exec: keeping the host interpreter out of reach of the container.

The init process is the host's Python interpreter until its final execve. If that execve
runs an image's script that starts with `#!/proc/self/exe`, the kernel resolves
/proc/self/exe to the *caller's* executable, so the container would be running (and could
later open for writing) the host's interpreter: the runc CVE-2019-5736 attack.

So the final step goes through a tiny static program held in a sealed memfd: Python
fexecve()s it, and it execve()s the container's process. At the moment that execve runs,
/proc/self/exe is the memfd: sealed against writes, and no file of the host. For `create`
the program also does the waiting for `start`, so the container's PID 1 is never the
host's interpreter while it waits (a neighbour sharing its pid namespace with
CAP_SYS_PTRACE could otherwise open /proc/1/exe). It is 156 bytes of x86_64 machine code
in a minimal ELF file (the listing is beside the bytes below):

    argv = ["corral-exec", FIFO, N, PATH, *ARGS]     FIFO "" and N "": no waiting
    prctl(PR_SET_DUMPABLE, 0)                       the exec made us dumpable again
    if FIFO:  fd = open(FIFO, O_WRONLY|O_CLOEXEC)    FIFO = /proc/self/fd/N (O_PATH fd N)
              write(fd, "0", 1); close(N)            fd closes at exec: start sees EOF
    execve(PATH, ARGS, envp); exit_group(127)

Run with fewer arguments, it is a script's interpreter (`#!/proc/self/exe`): it execs the
script again, as the kernel was asked to (argv[1]), which is all such a script can get.

On machines we have no code for, the process is exec'd directly (and the /proc/self/exe
protection is missing there; `corral-runc features` says so under annotations).
"""

from __future__ import annotations

import fcntl
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

_CODE = {
    "x86_64": (0x3E, bytes.fromhex(
        "48833c2404"      # 00: cmp [rsp],0x4               argc >= 4: started by corral-runc
        "730c"            # 05: jae 0x13
        "488b7c2410"      # 07: mov rdi,[rsp+0x10]          else (a #!/proc/self/exe script):
        "488d742410"      # 0c: lea rsi,[rsp+0x10]
        "eb6c"            # 11: jmp 0x7f
        "bf04000000"      # 13: mov edi,0x4                 prctl(PR_SET_DUMPABLE, 0)
        "31f6"            # 18: xor esi,esi
        "b89d000000"      # 1a: mov eax,0x9d
        "0f05"            # 1f: syscall
        "488b7c2410"      # 21: mov rdi,[rsp+0x10]          argv[1]: the exec fifo, or ""
        "803f00"          # 26: cmp [rdi],0x0
        "744a"            # 29: je 0x75
        "be01000800"      # 2b: mov esi,0x80001
        "31d2"            # 30: xor edx,edx
        "b802000000"      # 32: mov eax,0x2                 open: blocks until `start` reads
        "0f05"            # 37: syscall
        "4885c0"          # 39: test rax,rax
        "7851"            # 3c: js 0x8f
        "4889c7"          # 3e: mov rdi,rax
        "488d3553000000"  # 41: lea rsi,[rip+0x53]          "0"
        "ba01000000"      # 48: mov edx,0x1
        "b801000000"      # 4d: mov eax,0x1                 write
        "0f05"            # 52: syscall
        "488b742418"      # 54: mov rsi,[rsp+0x18]          argv[2]: the O_PATH fd N, decimal
        "31ff"            # 59: xor edi,edi
        "0fb606"          # 5b: movzx eax,[rsi]
        "85c0"            # 5e: test eax,eax
        "740c"            # 60: je 0x6e
        "6bff0a"          # 62: imul edi,edi,0xa
        "8d7c07d0"        # 65: lea edi,[rdi+rax*1-0x30]
        "48ffc6"          # 69: inc rsi
        "ebed"            # 6c: jmp 0x5b
        "b803000000"      # 6e: mov eax,0x3                 close(N)
        "0f05"            # 73: syscall
        "488b7c2420"      # 75: mov rdi,[rsp+0x20]          argv[3]: the program
        "488d742428"      # 7a: lea rsi,[rsp+0x28]          &argv[4]: its argv
        "488b0424"        # 7f: mov rax,[rsp]               argc
        "488d54c410"      # 83: lea rdx,[rsp+rax*8+0x10]    envp = &argv[argc+1]
        "b83b000000"      # 88: mov eax,0x3b                execve
        "0f05"            # 8d: syscall
        "bf7f000000"      # 8f: mov edi,0x7f                execve failed: exit_group(127)
        "b8e7000000"      # 94: mov eax,0xe7
        "0f05"            # 99: syscall
        "30"              # 9b: .byte 0x30                  "0"
    )),
}

_BASE = 0x400000
_EHDR = 64
_PHDR = 56


def elf_image(machine: str | None = None) -> bytes | None:
    """The helper as an ELF file for this machine, or None where we have no code for it."""
    entry = _CODE.get(machine or os.uname().machine)
    if entry is None:
        return None
    e_machine, code = entry
    size = _EHDR + _PHDR + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, SysV
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, e_machine, 1, _BASE + _EHDR + _PHDR,
                               _EHDR, 0, 0, _EHDR, _PHDR, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)
    return ehdr + phdr + code


def sealed_memfd() -> int | None:
    """A close-on-exec, write-sealed memfd holding the helper; None if unavailable."""
    image = elf_image()
    if image is None:
        return None
    fd = os.memfd_create("corral-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, image)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd


def exec_process(helper: int | None, path: str, args: list[str], env: list[str], *,
                 fifo_fd: int = -1) -> NoReturn:
    """Replace this process with PATH (argv ARGS, environment ENV) through HELPER (from
    sealed_memfd(); None: exec directly). With FIFO_FD (an O_PATH fd of exec.fifo) the
    helper first blocks until `start`, writes "0" to the fifo and closes FIFO_FD."""
    envmap: dict[bytes, bytes] = {}
    for e in env:
        k, _, v = os.fsencode(e).partition(b"=")
        envmap[k] = v
    fifo = [b"", b""] if fifo_fd < 0 else [f"/proc/self/fd/{fifo_fd}".encode(),
                                            str(fifo_fd).encode()]
    if helper is None:
        if fifo_fd >= 0:
            wait_for_start(fifo_fd)
        os.execve(path, args, envmap)
    os.execve(helper, [b"corral-exec", *fifo, os.fsencode(path)]
              + [os.fsencode(a) for a in args], envmap)


def wait_for_start(fifo_fd: int) -> None:
    """What the helper does before its exec, in Python: block until `start` opens the
    fifo (FIFO_FD is an O_PATH fd of it, reopened through the container's procfs, as runc
    does), write "0", close FIFO_FD. The write end stays open, close-on-exec, so `start`
    sees EOF only once the process has been exec'd."""
    try:
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        from .errors import SetupError
        raise SetupError("exec.fifo: reopening it needs /proc mounted in the "
                         "container") from None
    os.write(fd, b"0")  # fd is left open on purpose (see above)
    os.close(fifo_fd)
