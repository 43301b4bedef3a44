"""Docker's default seccomp profile, as an OCI LinuxSeccomp object for this host.

The facts (which syscalls, under which capability, architecture or kernel) follow moby's
profiles/seccomp (default profile of Docker Engine 28, libseccomp 2.6 / Linux 6.13 syscall
set); the representation is corral's own. `build()` keeps the entries whose conditions hold,
the way moby's setupSeccomp does:

    caps        every listed capability is in the container's set
    not_caps    none of the listed capabilities is in the container's set
    arches      the host architecture is listed (moby's GOARCH names: amd64, arm64, ...)
    not_arches  the host architecture is not listed
    min_kernel  the host kernel is at least this (major, minor)

Everything not allowed fails with EPERM. Names the host's libseccomp does not know (newer or
other-architecture syscalls) are skipped when the filter is loaded.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Docker's default capability set (moby oci/caps/defaults.go).
DOCKER_DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

# Allowed for every container, on every architecture (names of all architectures together:
# the 32-bit and time64 variants are simply unknown where they do not exist).
_ALWAYS = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday
getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64
ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup ipc
kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr
link linkat listen listmount listxattr listxattrat llistxattr _llseek lremovexattr lseek
lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore
mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify
mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
mseal msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr removexattrat rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction
rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile
sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32
setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
set_thread_area set_tid_address setuid setuid32 setxattr setxattrat shmat shmctl shmdt shmget
shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat
stat64 statfs statfs64 statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee
tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write
writev
"""

# Namespace-creating clone(2) flags: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER |
# NEWPID | NEWNET. Without CAP_SYS_ADMIN, clone is allowed only when none of them is set.
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000
AF_VSOCK = 40
# personality(2) values a container may ask for: PER_LINUX, UNAME26, PER_LINUX32,
# PER_LINUX32|UNAME26, and 0xffffffff (query the current persona without changing it).
PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

_ADMIN = """
bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie lsm_get_self_attr
lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount open_tree perf_event_open
quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare
"""


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, Any]:
    a: dict[str, Any] = {"index": index, "value": value, "op": op}
    if value_two:
        a["valueTwo"] = value_two
    return a


class _Entry:
    """One profile entry: an OCI syscall rule plus the conditions for including it."""

    __slots__ = ("arches", "args", "caps", "errno_ret", "min_kernel", "names", "not_arches",
                 "not_caps")

    def __init__(self, names: str, *, args: tuple[dict[str, Any], ...] = (),
                 errno_ret: int | None = None, caps: tuple[str, ...] = (),
                 not_caps: tuple[str, ...] = (), arches: tuple[str, ...] = (),
                 not_arches: tuple[str, ...] = (),
                 min_kernel: tuple[int, int] | None = None) -> None:
        self.names = names.split()
        self.args = args
        self.errno_ret = errno_ret
        self.caps = caps
        self.not_caps = not_caps
        self.arches = arches
        self.not_arches = not_arches
        self.min_kernel = min_kernel

    def applies(self, caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
        return (all(c in caps for c in self.caps)
                and not any(c in caps for c in self.not_caps)
                and (not self.arches or arch in self.arches)
                and arch not in self.not_arches
                and (self.min_kernel is None or kernel >= self.min_kernel))

    def rule(self) -> dict[str, Any]:
        r: dict[str, Any] = {"names": list(self.names)}
        if self.errno_ret is None:
            r["action"] = "SCMP_ACT_ALLOW"
        else:
            r["action"] = "SCMP_ACT_ERRNO"
            r["errnoRet"] = self.errno_ret
        if self.args:
            r["args"] = [dict(a) for a in self.args]
        return r


_ARM = ("arm", "arm64")
_S390 = ("s390", "s390x")

ENTRIES = (
    _Entry(_ALWAYS),
    _Entry("process_vm_readv process_vm_writev ptrace", min_kernel=(4, 8)),
    _Entry("socket", args=(_arg(0, "SCMP_CMP_NE", AF_VSOCK),)),
    *(_Entry("personality", args=(_arg(0, "SCMP_CMP_EQ", p),)) for p in PERSONALITIES),
    # architecture-specific calls
    _Entry("sync_file_range2 swapcontext", arches=("ppc64le",)),
    _Entry("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
           arches=_ARM),
    _Entry("arch_prctl", arches=("amd64", "x32")),
    _Entry("modify_ldt", arches=("amd64", "x32", "x86")),
    _Entry("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr", arches=_S390),
    _Entry("riscv_flush_icache riscv_hwprobe", arches=("riscv64",)),
    # capability-gated calls
    _Entry("open_by_handle_at", caps=("CAP_DAC_READ_SEARCH",)),
    _Entry(_ADMIN, caps=("CAP_SYS_ADMIN",)),
    # clone's flags are its first argument, except on s390 where they are the second
    _Entry("clone", args=(_arg(0, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS),),
           not_caps=("CAP_SYS_ADMIN",), not_arches=_S390),
    _Entry("clone", args=(_arg(1, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS),),
           not_caps=("CAP_SYS_ADMIN",), arches=_S390),
    # clone3 passes its flags in memory seccomp cannot read: answer ENOSYS so that libcs fall
    # back to clone, whose flags the rule above checks.
    _Entry("clone3", errno_ret=errno.ENOSYS, not_caps=("CAP_SYS_ADMIN",)),
    _Entry("reboot", caps=("CAP_SYS_BOOT",)),
    _Entry("chroot", caps=("CAP_SYS_CHROOT",)),
    _Entry("delete_module init_module finit_module", caps=("CAP_SYS_MODULE",)),
    _Entry("acct", caps=("CAP_SYS_PACCT",)),
    _Entry("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
           caps=("CAP_SYS_PTRACE",)),
    _Entry("iopl ioperm", caps=("CAP_SYS_RAWIO",)),
    _Entry("settimeofday stime clock_settime clock_settime64", caps=("CAP_SYS_TIME",)),
    _Entry("vhangup", caps=("CAP_SYS_TTY_CONFIG",)),
    _Entry("get_mempolicy mbind set_mempolicy set_mempolicy_home_node", caps=("CAP_SYS_NICE",)),
    _Entry("syslog", caps=("CAP_SYSLOG",)),
    _Entry("bpf", caps=("CAP_BPF",)),
    _Entry("perf_event_open", caps=("CAP_PERFMON",)),
)

# uname machine -> (moby's architecture name, OCI architectures of the filter). moby's archMap
# lists the native architecture with the compat ones the kernel can also run.
_MACHINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "x86_64": ("amd64", ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "aarch64": ("arm64", ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
    "arm64": ("arm64", ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")),
    "armv7l": ("arm", ()),
    "armv8l": ("arm", ()),
    "i386": ("x86", ()),
    "i686": ("x86", ()),
    "s390x": ("s390x", ("SCMP_ARCH_S390X", "SCMP_ARCH_S390")),
    "riscv64": ("riscv64", ("SCMP_ARCH_RISCV64",)),
    "ppc64le": ("ppc64le", ()),
    "mips64": ("mips64", ("SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32")),
}


def host_arch() -> str:
    """The host's architecture by moby's (Go's) name: amd64, arm64, ..."""
    machine = os.uname().machine
    return _MACHINES.get(machine, (machine, ()))[0]


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a kernel release string such as "6.1.0-18-amd64"."""
    parts = (release or os.uname().release).split(".")
    nums = []
    for part in parts[:2]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        nums.append(int(digits or 0))
    while len(nums) < 2:
        nums.append(0)
    return nums[0], nums[1]


def build(capabilities: list[str] | None = None, *, arch: str | None = None,
          kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """The OCI LinuxSeccomp dict for a container with these capabilities.

    `arch` (moby's names: amd64, arm64, s390x, ...) and `kernel` default to the host's.
    """
    caps = set(DOCKER_DEFAULT_CAPS if capabilities is None else capabilities)
    arch = arch or host_arch()
    kernel = kernel or kernel_version()
    architectures: tuple[str, ...] = ()
    for native, archs in _MACHINES.values():
        if native == arch:
            architectures = archs
            break
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": list(architectures),
        "syscalls": [e.rule() for e in ENTRIES if e.applies(caps, arch, kernel)],
    }
