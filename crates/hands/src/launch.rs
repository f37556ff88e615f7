//! Starting bwrap with nothing open but stdin, stdout and stderr.
//!
//! bwrap hands every descriptor it inherits to the sandbox, and agentd may hold some it never
//! asked for: whatever launched it left them open without close-on-exec. They must be closed
//! between fork and exec, which safe Rust cannot do in the child; so the helper's own
//! executable runs first as a launcher (`<helper> --launch [--after-go] bwrap ARGS…`): a
//! fresh, single-threaded process that closes every descriptor above 2 and then becomes bwrap.

use std::os::unix::process::CommandExt;

use nix::errno::Errno;

/// First argument of a helper command line that asks for a launch.
pub const LAUNCH: &str = "--launch";
/// Wait for a newline on stdin before exec: agentd first moves the launcher into the
/// sandbox's cgroup, so bwrap and everything under it start inside.
pub const AFTER_GO: &str = "--after-go";

/// The program and arguments to launch, if the helper's command line asks for a launch.
pub fn requested(args: &[String]) -> Option<&[String]> {
    match args.split_first() {
        Some((first, rest)) if first == LAUNCH => Some(rest),
        _ => None,
    }
}

/// Close inherited descriptors and exec what `requested` returned; returns only on failure,
/// with why.
pub fn exec(args: &[String]) -> String {
    let (wait, args) = match args.split_first() {
        Some((first, rest)) if first == AFTER_GO => (true, rest),
        _ => (false, args),
    };
    let Some((program, rest)) = args.split_first() else {
        return "nothing to launch".into();
    };
    if wait && let Err(e) = wait_for_go() {
        return e;
    }
    close_inherited();
    let e = std::process::Command::new(program).args(rest).exec();
    format!("cannot run {program}: {e}")
}

fn wait_for_go() -> Result<(), String> {
    // One byte at a time: everything after the newline is for the helper, read after exec.
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(std::io::stdin(), &mut byte) {
            Ok(0) => return Err("agentd went away before the sandbox started".into()),
            Ok(_) if byte[0] == b'\n' => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("cannot read the go signal: {e}")),
        }
    }
}

/// Close every descriptor above stderr. This process has opened none it needs: std opens
/// its own close-on-exec and holds none across this call.
fn close_inherited() {
    let listed: Option<Vec<i32>> = std::fs::read_dir("/proc/self/fd").ok().map(|dir| {
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    });
    // Without /proc, every number up to the descriptor limit.
    let fds = listed.unwrap_or_else(|| {
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .unwrap_or((1024, 1024));
        (3..i32::try_from(soft.min(1 << 20)).unwrap_or(1024)).collect()
    });
    // The listing's own descriptor is among them, closed already: EBADF, harmless.
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        let _ = nix::unistd::close(fd);
    }
}
