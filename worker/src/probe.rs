//! Test-only: what an attacker who escaped wasm would try first, run from
//! inside a fully sandboxed worker. `prx-worker --test-probe NAME` loads
//! its plugin as usual and then answers every tool call by trying NAME and
//! reporting the result as the tool's output: `blocked: <errno>` or
//! `ALLOWED`. A probe the seccomp filter catches never reports: the worker
//! dies of `SIGSYS`, which the caller sees as a crash.
//!
//! Only the supervisor library's test configuration passes the flag; the
//! `prx` binary and its config file have no way to.

use std::ffi::CString;

use nix::errno::Errno;
use nix::libc;

/// Runs one probe. `name` is `what[:argument]`; `link` is the worker's
/// link to the supervisor.
pub fn run(name: &str, link: libc::c_int) -> String {
    let (what, arg) = name.split_once(':').unwrap_or((name, ""));
    let outcome: Result<(), Errno> = match what {
        "open-passwd" => open("/etc/passwd", libc::O_RDONLY),
        // The argument: a file the supervisor owns (its kv database).
        "open-file" => open(arg, libc::O_RDONLY),
        "write-file" => open("/tmp/prx-probe", libc::O_CREAT | libc::O_WRONLY),
        "inet-socket" => socket(libc::AF_INET).map(|_| ()),
        // The argument: a port a test listens on at 127.0.0.1.
        "connect-loopback" => connect_loopback(arg.parse().unwrap_or(9)),
        "fork" => fork(),
        "execve" => execve(),
        // The argument: the supervisor's pid.
        "ptrace" => ptrace(arg.parse().unwrap_or(1)),
        "kill" => kill(arg.parse().unwrap_or(1)),
        // The argument: a process the test started, of the worker's uid.
        // SIGIO with a chosen signal: the kernel sends it, not the worker.
        "sigio-kill" => sigio_kill(arg.parse().unwrap_or(1)),
        "raise-nofile" => raise_nofile(),
        "send-fd" => send_fd(link),
        // Descriptors besides stdio and the link: the artifact's, say,
        // left open after it was mapped.
        "stray-fds" => {
            let Some(stray) = stray_fds(link) else {
                return "the probe cannot fstat its own link".into();
            };
            if stray.is_empty() {
                Err(Errno::EBADF)
            } else {
                let named: Vec<String> = stray
                    .iter()
                    .map(
                        |fd| match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
                            Ok(target) => format!("{fd} ({})", target.display()),
                            Err(_) => fd.to_string(),
                        },
                    )
                    .collect();
                return format!("ALLOWED: descriptors {} are open", named.join(", "));
            }
        }
        other => return format!("unknown probe {other:?}"),
    };
    match outcome {
        Ok(()) => "ALLOWED".into(),
        Err(errno) => format!("blocked: {}", errno.desc()),
    }
}

fn check(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    if rc < 0 { Err(Errno::last()) } else { Ok(rc) }
}

fn open(path: &str, flags: libc::c_int) -> Result<(), Errno> {
    let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: a plain syscall on a valid C string; the fd, if any, is
    // closed at once.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags, 0o600) } as libc::c_long)?;
    // SAFETY: the fd was just opened by this function.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

fn socket(domain: libc::c_int) -> Result<libc::c_int, Errno> {
    // SAFETY: a plain syscall.
    check(unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) } as libc::c_long)
        .map(|fd| fd as libc::c_int)
}

fn connect_loopback(port: u16) -> Result<(), Errno> {
    let fd = socket(libc::AF_INET)?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a valid sockaddr_in of the size given.
    let rc = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let result = check(rc as libc::c_long).map(|_| ());
    // SAFETY: the fd was opened above.
    unsafe { libc::close(fd) };
    result
}

fn fork() -> Result<(), Errno> {
    // SAFETY: the child only exits at once.
    let pid = check(unsafe { libc::fork() } as libc::c_long)?;
    if pid == 0 {
        // SAFETY: leaving the child without running anything else.
        unsafe { libc::_exit(0) };
    }
    Ok(())
}

fn execve() -> Result<(), Errno> {
    let path = CString::new("/bin/true").map_err(|_| Errno::EINVAL)?;
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: valid, null-terminated argv and envp.
    check(unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) } as libc::c_long)
        .map(|_| ())
}

fn ptrace(pid: libc::pid_t) -> Result<(), Errno> {
    // SAFETY: a plain syscall; attaching would only stop the target.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    })
    .map(|_| ())
}

fn kill(pid: libc::pid_t) -> Result<(), Errno> {
    // SAFETY: a plain syscall. If it were allowed, the target dies: the
    // test that asks for this probe checks its supervisor survives.
    check(unsafe { libc::kill(pid, libc::SIGKILL) } as libc::c_long).map(|_| ())
}

/// Passes a descriptor (stdin) to the supervisor over the link.
fn send_fd(link: libc::c_int) -> Result<(), Errno> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives the
    // call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one header and one int.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), 0);
    }
    // SAFETY: a valid msghdr.
    check(unsafe { libc::sendmsg(link, &msg, 0) } as libc::c_long).map(|_| ())
}

fn raise_nofile() -> Result<(), Errno> {
    // Above a sandboxed worker's hard limit (32), below the supervisor's.
    let limit = libc::rlimit {
        rlim_cur: 4096,
        rlim_max: 4096,
    };
    // SAFETY: a valid rlimit struct.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } as libc::c_long).map(|_| ())
}

/// Open descriptors onto something outside the process: any but stdio,
/// the link (and the duplicate the worker writes through), and anonymous
/// files with no name on disk (wasmtime's memory images), among the first
/// 1024 (the worker's descriptor limit is far below that). `None` when
/// the link itself cannot be examined, so an empty answer always means
/// every descriptor was looked at.
fn stray_fds(link: libc::c_int) -> Option<Vec<libc::c_int>> {
    // The fstat system call itself: the C library's goes through
    // newfstatat, which the filter refuses.
    let stat = |fd: libc::c_int| {
        // SAFETY: fstat fills a plain struct; a closed fd is an error.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::syscall(libc::SYS_fstat, fd, &mut st as *mut libc::stat) };
        (rc == 0).then_some(st)
    };
    let link = stat(link)?;
    Some(
        (3..1024)
            .filter(|&fd| match stat(fd) {
                None => false,
                Some(st) if (st.st_dev, st.st_ino) == (link.st_dev, link.st_ino) => false,
                Some(st) => !(st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_nlink == 0),
            })
            .collect(),
    )
}

/// `F_SETSIG` (Linux; not in the libc crate).
const F_SETSIG: libc::c_int = 10;

/// Asks the kernel to SIGKILL `victim` on I/O: a socket pair whose second
/// end is owned by the victim (`F_SETOWN`), signals with `SIGKILL`
/// (`F_SETSIG`) and is asynchronous (`O_ASYNC`); writing to the first end
/// makes the second readable, and the kernel signals its owner.
fn sigio_kill(victim: libc::pid_t) -> Result<(), Errno> {
    let mut pair = [0 as libc::c_int; 2];
    // SAFETY: plain syscalls on descriptors this function made.
    unsafe {
        check(
            libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr())
                as libc::c_long,
        )?;
        check(libc::fcntl(pair[1], libc::F_SETOWN, victim) as libc::c_long)?;
        check(libc::fcntl(pair[1], F_SETSIG, libc::SIGKILL) as libc::c_long)?;
        let flags = check(libc::fcntl(pair[1], libc::F_GETFL) as libc::c_long)? as libc::c_int;
        check(libc::fcntl(pair[1], libc::F_SETFL, flags | libc::O_ASYNC) as libc::c_long)?;
        check(libc::write(pair[0], b"x".as_ptr().cast(), 1) as libc::c_long)?;
    }
    // The signal is sent on the write; give the kernel a moment.
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(())
}
