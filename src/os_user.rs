//! Who runs pgpilot, and on which machine: the one place that asks the C
//! library (password database, uid, host name).
//!
//! "Who is acting" is the *effective* user (`geteuid`), everywhere: the kernel
//! checks the data directory's and the audit files' permissions against it,
//! the files pgpilot creates are owned by it, and libpq takes the default
//! database user from it (`pg_fe_getusername` in fe-auth.c). The audit's
//! operator, the default `user=` and the owner of the audit files therefore
//! name the same account. The real uid (`getuid`) differs only in a setuid
//! program, where it is the caller, not the account whose rights are used.

use std::ffi::{CStr, CString};
use std::io;
use std::path::PathBuf;

/// An entry of the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// The home directory, when the entry names one.
    pub home: Option<PathBuf>,
}

/// The effective uid: whose rights this process uses.
pub fn effective_uid() -> libc::uid_t {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective user's entry in the password database, if it has one.
pub fn acting() -> Option<Account> {
    by_uid(effective_uid()).ok().flatten()
}

/// The name the audit records as the operator: the effective user's name in
/// the password database, else `$USER` or `$LOGNAME`, else `uid N`.
pub fn operator_name() -> String {
    acting().map(|a| a.name).unwrap_or_else(|| {
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| format!("uid {}", effective_uid()))
    })
}

/// This machine's host name, for the audit's client host; `unknown` if the
/// system will not say.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The password database's entry for `uid`; `None` when there is none.
pub fn by_uid(uid: libc::uid_t) -> io::Result<Option<Account>> {
    lookup(|pwd, buf, len, result| {
        // SAFETY: all pointers are valid for the call and `len` is the
        // buffer's real size.
        unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) }
    })
}

/// The password database's entry for the user called `name`; `None` when
/// there is none.
pub fn by_name(name: &str) -> io::Result<Option<Account>> {
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    lookup(|pwd, buf, len, result| {
        // SAFETY: `cname` is a NUL-terminated string alive for the call; the
        // other pointers are valid and `len` is the buffer's real size.
        unsafe { libc::getpwnam_r(cname.as_ptr(), pwd, buf, len, result) }
    })
}

/// Runs a reentrant `getpw*_r` call (safe with threads), growing the buffer
/// while the entry does not fit it (ERANGE).
fn lookup(
    mut call: impl FnMut(
        &mut libc::passwd,
        *mut libc::c_char,
        libc::size_t,
        &mut *mut libc::passwd,
    ) -> libc::c_int,
) -> io::Result<Option<Account>> {
    let mut size = 16 * 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: passwd is a plain C struct of pointers and integers; all
        // zeroes is a valid value for an out-parameter.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == libc::ERANGE && size < 1024 * 1024 {
            size *= 4;
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() || pwd.pw_name.is_null() {
            return Ok(None);
        }
        // SAFETY: the call succeeded, so pw_name (and pw_dir when non-null)
        // point to NUL-terminated strings inside `buf`, which is still alive.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        let home = (!pwd.pw_dir.is_null()).then(|| {
            // SAFETY: as above.
            PathBuf::from(
                unsafe { CStr::from_ptr(pwd.pw_dir) }
                    .to_string_lossy()
                    .into_owned(),
            )
        });
        return Ok(Some(Account {
            name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acting_user_is_found_by_uid_and_by_name_alike() {
        let me = acting().expect("the test's user is in the password database");
        assert_eq!(me.uid, effective_uid());
        assert_eq!(by_name(&me.name).unwrap(), Some(me.clone()));
        assert_eq!(operator_name(), me.name);
    }

    #[test]
    fn an_unknown_or_impossible_name_is_no_account() {
        assert_eq!(by_name("pgpilot-no-such-user-x").unwrap(), None);
        assert!(by_name("nul\0inside").is_err());
    }
}
