//! The process's open-file limit. Every socket is a file descriptor, and the soft
//! `RLIMIT_NOFILE` is often 1024 while the hard limit allows far more: left as it is, about a
//! thousand sockets make `accept` fail with EMFILE for everyone. Raising the soft limit to the
//! hard one needs no privilege.

/// The soft limit before and after [`raise_to_hard_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found.
    pub before: u64,
    /// The soft limit now in force.
    pub now: u64,
}

/// Used when the hard limit is "unlimited", which the kernel refuses as a soft limit for
/// files (Linux caps it at fs.nr_open, 1048576 by default).
#[cfg(unix)]
const UNLIMITED_FALLBACK: libc::rlim_t = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or, when that is refused, to what the
/// kernel allows below it) and returns the limit before and after.
// rlim_t is u64 on 64-bit targets, narrower on some 32-bit ones.
#[cfg(unix)]
#[allow(clippy::useless_conversion)]
pub fn raise_to_hard_limit() -> std::io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer to a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = u64::from(limit.rlim_cur);
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(FdLimit {
            before,
            now: before,
        });
    }
    let mut wanted = vec![limit.rlim_max];
    if limit.rlim_max == libc::RLIM_INFINITY {
        wanted = vec![UNLIMITED_FALLBACK];
    }
    // macOS refuses more than OPEN_MAX even below the hard limit.
    wanted.push(10_240);
    let mut last_error = None;
    for cur in wanted
        .into_iter()
        .filter(|&cur| cur > limit.rlim_cur && cur <= limit.rlim_max)
    {
        let raised = libc::rlimit {
            rlim_cur: cur,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(FdLimit {
                before,
                now: u64::from(cur),
            });
        }
        last_error = Some(std::io::Error::last_os_error());
    }
    match last_error {
        Some(e) => Err(e),
        None => Ok(FdLimit {
            before,
            now: before,
        }),
    }
}

/// Elsewhere there is nothing to raise.
#[cfg(not(unix))]
pub fn raise_to_hard_limit() -> std::io::Result<FdLimit> {
    Ok(FdLimit { before: 0, now: 0 })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn current() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_to_hard_limit.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit
    }

    #[test]
    #[allow(clippy::useless_conversion)]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let hard = current().rlim_max;
        let raised = raise_to_hard_limit().expect("raising the soft limit needs no privilege");
        let after = current();
        assert_eq!(u64::from(after.rlim_cur), raised.now);
        assert!(raised.now >= raised.before);
        assert_eq!(after.rlim_max, hard, "the hard limit is left alone");
        if hard != libc::RLIM_INFINITY {
            assert_eq!(after.rlim_cur, hard);
        }
        // Asking again finds nothing left to raise.
        let again = raise_to_hard_limit().expect("still allowed");
        assert_eq!(again.before, again.now);
    }
}
