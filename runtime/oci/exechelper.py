"""The last exec: keeping the host interpreter out of reach of the container.

The init process is the host's Python interpreter until its final execve. If that execve
runs an image's script that starts with `#!/proc/self/exe`, the kernel resolves
/proc/self/exe to the *caller's* executable, so the container would be running (and could
later open for writing) the host's interpreter: the runc CVE-2019-5736 attack.

So the final step goes through a tiny static program held in a sealed memfd: Python
fexecve()s it with argv = [name, path, *args], and it runs execve(path, args, envp). At
the moment that execve runs, /proc/self/exe is the memfd: sealed against writes, and no
file of the host. The program is 40 bytes of machine code in a minimal ELF file:

    x86_64                                    what it does
    mov  rdi, [rsp+16]                        path = argv[1]
    lea  rsi, [rsp+24]                        args = &argv[2]
    mov  rax, [rsp]                           argc
    lea  rdx, [rsp+rax*8+16]                  envp = &argv[argc+1]
    mov  eax, 59 ; syscall                    execve(path, args, envp)
    mov  edi, 127; mov eax, 231; syscall      exit_group(127) if execve failed

On machines we have no code for, the process is exec'd directly (and the /proc/self/exe
protection is missing there; `corral-runc features` says so under annotations).
"""

from __future__ import annotations

import fcntl
import os
import struct

_CODE = {
    "x86_64": (0x3E, bytes.fromhex(
        "488b7c2410"      # mov rdi,[rsp+0x10]
        "488d742418"      # lea rsi,[rsp+0x18]
        "488b0424"        # mov rax,[rsp]
        "488d54c410"      # lea rdx,[rsp+rax*8+0x10]
        "b83b000000"      # mov eax,59 (execve)
        "0f05"            # syscall
        "bf7f000000"      # mov edi,127
        "b8e7000000"      # mov eax,231 (exit_group)
        "0f05"            # syscall
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


def exec_process(path: str, args: list[str], env: list[str]) -> None:
    """Replace this process with PATH (argv ARGS, environment ENV). Does not return."""
    envmap: dict[bytes, bytes] = {}
    for e in env:
        k, _, v = os.fsencode(e).partition(b"=")
        envmap[k] = v
    fd = sealed_memfd()
    if fd is None:
        os.execve(path, args, envmap)
    os.execve(fd, [b"corral-exec", os.fsencode(path)] + [os.fsencode(a) for a in args],
              envmap)
