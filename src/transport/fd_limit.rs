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
const UNLIMITED_FALLBACK: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or, when that is refused, to what the
/// kernel allows below it) and returns the limit before and after. (A limit of `None` is
/// "unlimited".)
pub fn raise_to_hard_limit() -> std::io::Result<FdLimit> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let (current, maximum) = (
        limit.current.unwrap_or(u64::MAX),
        limit.maximum.unwrap_or(u64::MAX),
    );
    let before = current;
    if current >= maximum {
        return Ok(FdLimit {
            before,
            now: before,
        });
    }
    let mut wanted = vec![maximum];
    if limit.maximum.is_none() {
        wanted = vec![UNLIMITED_FALLBACK];
    }
    // macOS refuses more than OPEN_MAX even below the hard limit.
    wanted.push(10_240);
    let mut last_error = None;
    for cur in wanted
        .into_iter()
        .filter(|&cur| cur > current && cur <= maximum)
    {
        let raised = Rlimit {
            current: Some(cur),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return Ok(FdLimit { before, now: cur }),
            Err(e) => last_error = Some(std::io::Error::from(e)),
        }
    }
    match last_error {
        Some(e) => Err(e),
        None => Ok(FdLimit {
            before,
            now: before,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{getrlimit, Resource};

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let hard = getrlimit(Resource::Nofile).maximum;
        let raised = raise_to_hard_limit().expect("raising the soft limit needs no privilege");
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.current.unwrap_or(u64::MAX), raised.now);
        assert!(raised.now >= raised.before);
        assert_eq!(after.maximum, hard, "the hard limit is left alone");
        if hard.is_some() {
            assert_eq!(after.current, hard);
        }
        // Asking again finds nothing left to raise.
        let again = raise_to_hard_limit().expect("still allowed");
        assert_eq!(again.before, again.now);
    }
}
