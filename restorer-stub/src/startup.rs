//! The initial process stack: argc, argv, envp and the auxiliary vector (execve(2)).

pub const AT_NULL: usize = 0;
pub const AT_EXECFD: usize = 2;

pub struct Startup {
    pub argc: usize,
    pub argv: *const *const u8,
    pub envp: *const *const u8,
    pub auxv: *const usize,
}

/// Length of a NUL-terminated string.
///
/// # Safety
/// `p` must point to a NUL-terminated string.
pub unsafe fn cstr_len(p: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated.
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    n
}

impl Startup {
    /// # Safety
    /// `sp` must be the stack pointer at process entry.
    pub unsafe fn parse(sp: *const usize) -> Startup {
        // SAFETY: layout of the entry stack per the ABI: argc, argv[argc], NULL,
        // envp..., NULL, auxv pairs up to AT_NULL.
        unsafe {
            let argc = *sp;
            let argv = sp.add(1) as *const *const u8;
            let envp = argv.add(argc + 1);
            let mut e = envp;
            while !(*e).is_null() {
                e = e.add(1);
            }
            Startup { argc, argv, envp, auxv: e.add(1) as *const usize }
        }
    }

    pub fn arg(&self, i: usize) -> Option<&'static [u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: i < argc, so argv[i] is a valid NUL-terminated string.
        unsafe {
            let p = *self.argv.add(i);
            Some(core::slice::from_raw_parts(p, cstr_len(p) + 1))
        }
    }

    pub fn aux(&self, key: usize) -> Option<usize> {
        let mut p = self.auxv;
        // SAFETY: the auxv ends with AT_NULL.
        unsafe {
            while *p != AT_NULL {
                if *p == key {
                    return Some(*p.add(1));
                }
                p = p.add(2);
            }
        }
        None
    }

    /// The value of `NAME` in the environment, if it is set.
    fn env(&self, name: &[u8]) -> Option<&'static [u8]> {
        let mut e = self.envp;
        // SAFETY: envp is a NULL-terminated array of NUL-terminated strings, which
        // live as long as the process.
        unsafe {
            while !(*e).is_null() {
                let s = core::slice::from_raw_parts(*e, cstr_len(*e));
                if s.len() > name.len() && s.starts_with(name) && s[name.len()] == b'=' {
                    return Some(&s[name.len() + 1..]);
                }
                e = e.add(1);
            }
        }
        None
    }

    /// Whether `NAME` is set in the environment to exactly `value`.
    pub fn env_is(&self, name: &[u8], value: &[u8]) -> bool {
        self.env(name) == Some(value)
    }

    /// Whether `NAME` is set in the environment to something other than "" or "0".
    pub fn env_flag(&self, name: &[u8]) -> bool {
        self.env(name).is_some_and(|v| !v.is_empty() && v != b"0")
    }

    /// The value of `NAME` as a decimal number, if it is set to one.
    pub fn env_num(&self, name: &[u8]) -> Option<u64> {
        let v = self.env(name)?;
        if v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(v.iter().fold(0, |n, &d| n * 10 + (d - b'0') as u64))
    }
}
