//! The per-thread part of `ckpt info`: for every Thread record its TID, name,
//! scheduler state, scheduling, the system call it was in and what the resume does
//! with it (restart or EINTR, as the freeze decided and recorded), its registers,
//! and where it stopped (nearest symbol and disassembly). A leader that had called
//! pthread_exit is shown as exited, with nothing else: its registers mean nothing.

use super::decode;
use super::disasm::{self, Insn};
use super::memory::ImageMemory;
use super::symbols;
use ckpt_format::*;
use serde::Serialize;

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

#[derive(Serialize)]
pub struct ThreadInfo {
    pub tid: u32,
    /// Its name (/proc/PID/task/TID/comm at the freeze).
    pub name: String,
    /// The thread-group leader had called pthread_exit; nothing below is set.
    pub exited: bool,
    /// The scheduler state letter at the freeze (R, S, D, ...) and its meaning.
    pub state: String,
    pub state_name: &'static str,
    /// e.g. "SCHED_OTHER, nice 0".
    pub scheduling: String,
    pub rip: String,
    pub rsp: String,
    pub rbp: String,
    pub syscall: Syscall,
    pub fs_base: String,
    pub gs_base: String,
    pub rseq: Option<Rseq>,
    pub sigmask: String,
    pub blocked_signals: Vec<String>,
    pub altstack: Option<[String; 2]>,
    pub robust_list: Option<String>,
    /// Every general register: rax..r15, rip, eflags, orig_rax, segments, bases.
    pub registers: Registers,
    #[serde(rename = "where")]
    pub stopped: Option<Where>,
}

#[derive(Serialize)]
pub struct Syscall {
    /// "restart", "eintr", "returned" or "none".
    pub state: &'static str,
    pub number: Option<u64>,
    pub name: Option<&'static str>,
    pub orig_rax: i64,
    pub rax: String,
    pub summary: String,
}

#[derive(Serialize)]
pub struct Rseq {
    pub addr: String,
    pub len: u32,
    pub sig: String,
}

/// Register name/value pairs; a JSON object in this order.
pub struct Registers(pub Vec<(&'static str, String)>);

impl Serialize for Registers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
pub struct SymbolInfo {
    pub name: String,
    pub offset: u64,
    pub address: String,
}

#[derive(Serialize)]
pub struct Where {
    pub rip: String,
    /// The ELF file (or "[vdso]") mapped at rip.
    pub module: Option<String>,
    /// "file", "stored pages" or "vdso": where its ELF was read from.
    pub elf_source: Option<&'static str>,
    pub load_bias: Option<String>,
    pub symbol: Option<SymbolInfo>,
    pub build_id: Option<String>,
    /// Why something above is missing, or why the file on disk was not used.
    pub notes: Vec<String>,
    pub instructions: Vec<Insn>,
}

fn regs_list(r: &Regs) -> Registers {
    Registers(
        [
            ("rax", r.rax),
            ("rbx", r.rbx),
            ("rcx", r.rcx),
            ("rdx", r.rdx),
            ("rsi", r.rsi),
            ("rdi", r.rdi),
            ("rbp", r.rbp),
            ("rsp", r.rsp),
            ("r8", r.r8),
            ("r9", r.r9),
            ("r10", r.r10),
            ("r11", r.r11),
            ("r12", r.r12),
            ("r13", r.r13),
            ("r14", r.r14),
            ("r15", r.r15),
            ("rip", r.rip),
            ("eflags", r.eflags),
            ("orig_rax", r.orig_rax),
            ("cs", r.cs),
            ("ss", r.ss),
            ("ds", r.ds),
            ("es", r.es),
            ("fs", r.fs),
            ("gs", r.gs),
            ("fs_base", r.fs_base),
            ("gs_base", r.gs_base),
        ]
        .into_iter()
        .map(|(n, v)| (n, format!("{v:#018x}")))
        .collect(),
    )
}

/// The system call the thread was in, as the freeze recorded it (`syscall_nr`,
/// `restart`); the registers already carry the outcome (rax = orig_rax and rip on
/// `syscall` for a restart, -EINTR otherwise).
fn syscall_info(th: &Thread) -> Syscall {
    let r = &th.regs;
    let rax = hex(r.rax);
    let orig_rax = r.orig_rax as i64;
    if th.syscall_nr < 0 {
        return Syscall { state: "none", number: None, name: None, orig_rax, rax, summary: "not stopped in a system call".into() };
    }
    let nr = th.syscall_nr as u64;
    let name = decode::syscall_name(nr);
    let call = match name {
        Some(n) => format!("{n} ({nr})"),
        None => format!("system call {nr}"),
    };
    let ret = r.rax as i64;
    let (state, summary) = match th.restart {
        THREAD_RESTART_AGAIN => ("restart", format!("restarts {call}: rip is on its `syscall` and rax = orig_rax")),
        THREAD_RESTART_EINTR => ("eintr", format!("{call} returns -EINTR (its restart state is the kernel's)")),
        _ if (-4095..0).contains(&ret) => {
            let e = decode::errno_name(-ret).map_or(format!("{}", -ret), |n| n.to_string());
            ("returned", format!("{call} returned -{e}"))
        }
        _ => ("returned", format!("{call} returned {ret}")),
    };
    Syscall { state, number: Some(nr), name, orig_rax, rax, summary }
}

/// What a state letter of /proc/PID/stat means (proc(5)).
pub fn state_name(letter: char) -> &'static str {
    match letter {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        'P' => "parked",
        _ => "unknown",
    }
}

fn scheduling(th: &Thread) -> String {
    let policy = match th.sched_policy & !0x4000_0000 {
        0 => "SCHED_OTHER".to_owned(),
        1 => "SCHED_FIFO".to_owned(),
        2 => "SCHED_RR".to_owned(),
        3 => "SCHED_BATCH".to_owned(),
        5 => "SCHED_IDLE".to_owned(),
        6 => "SCHED_DEADLINE".to_owned(),
        p => format!("policy {p}"),
    };
    let reset = if th.sched_policy & 0x4000_0000 != 0 { " (reset on fork)" } else { "" };
    if th.sched_priority != 0 {
        format!("{policy}{reset} priority {}, nice {}", th.sched_priority, th.nice)
    } else {
        format!("{policy}{reset}, nice {}", th.nice)
    }
}

/// Where `rip` is: module, nearest symbol, and the instructions around it.
pub fn stopped(mem: &ImageMemory, rip: u64) -> Where {
    let mut w = Where {
        rip: hex(rip),
        module: None,
        elf_source: None,
        load_bias: None,
        symbol: None,
        build_id: None,
        notes: Vec::new(),
        instructions: Vec::new(),
    };
    let mut func_start = None;
    let mut names = Vec::new();
    match symbols::module_at(mem, rip) {
        Ok(m) => {
            w.module = Some(m.path.clone());
            w.elf_source = Some(m.source.name());
            w.load_bias = Some(hex(m.bias));
            w.build_id = m.elf.build_id.clone();
            w.notes.extend(m.note.clone());
            match m.describe(rip) {
                Some((name, offset, address)) => {
                    func_start = Some(address);
                    w.symbol = Some(SymbolInfo { name, offset, address: hex(address) });
                }
                None => w.notes.push(format!("no symbol before {rip:#x} in {}", m.path)),
            }
            // One name per address: the preferred one comes first.
            let mut syms = m.elf.symbols().to_vec();
            syms.dedup_by_key(|s| s.addr);
            names = syms.into_iter().map(|s| (s.addr.wrapping_add(m.bias), s.size, s.name)).collect();
        }
        Err(e) => w.notes.push(e),
    }
    w.instructions = disasm::around(mem, rip, func_start, names);
    if w.instructions.is_empty() {
        w.notes.push(format!("no stored code at {rip:#x}"));
    }
    w
}

fn lossy(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One entry per Thread record, in the image's order (the leader first).
pub fn build(mem: &ImageMemory, threads: &[Thread]) -> Vec<ThreadInfo> {
    threads
        .iter()
        .map(|th| {
            let r = &th.regs;
            let exited = th.flags & THREAD_EXITED != 0;
            let letter = char::from_u32(th.state).filter(|c| c.is_ascii_graphic()).unwrap_or('?');
            ThreadInfo {
                tid: th.tid,
                name: lossy(&th.comm),
                exited,
                state: letter.to_string(),
                state_name: state_name(letter),
                scheduling: scheduling(th),
                rip: hex(r.rip),
                rsp: hex(r.rsp),
                rbp: hex(r.rbp),
                syscall: syscall_info(th),
                fs_base: hex(r.fs_base),
                gs_base: hex(r.gs_base),
                rseq: (th.rseq_addr != 0).then(|| Rseq {
                    addr: hex(th.rseq_addr),
                    len: th.rseq_len,
                    sig: format!("{:#010x}", th.rseq_sig),
                }),
                sigmask: format!("{:#018x}", th.sigmask),
                blocked_signals: decode::signal_set(th.sigmask),
                altstack: (th.ss_size != 0).then(|| [hex(th.ss_sp), hex(th.ss_size)]),
                robust_list: (th.robust_list != 0).then(|| hex(th.robust_list)),
                registers: regs_list(r),
                stopped: (!exited).then(|| stopped(mem, r.rip)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_outcomes_come_from_the_record() {
        let mut th = Thread { syscall_nr: 202, restart: THREAD_RESTART_AGAIN, ..Default::default() };
        th.regs.rax = 202;
        let s = syscall_info(&th);
        assert_eq!((s.state, s.name, s.number), ("restart", Some("futex"), Some(202)));
        th.restart = THREAD_RESTART_EINTR;
        th.regs.rax = -4i64 as u64;
        assert_eq!(syscall_info(&th).state, "eintr");
        th.restart = THREAD_RESTART_NONE;
        th.regs.rax = -110i64 as u64;
        assert_eq!(syscall_info(&th).summary, "futex (202) returned -ETIMEDOUT");
        th.syscall_nr = -1;
        assert_eq!(syscall_info(&th).state, "none");
    }

    #[test]
    fn scheduling_and_state_words() {
        let th = Thread { sched_policy: 1, sched_priority: 10, nice: 0, ..Default::default() };
        assert_eq!(scheduling(&th), "SCHED_FIFO priority 10, nice 0");
        let th = Thread { sched_policy: 0x4000_0003, nice: 5, ..Default::default() };
        assert_eq!(scheduling(&th), "SCHED_BATCH (reset on fork), nice 5");
        assert_eq!(state_name('S'), "sleeping");
        assert_eq!(state_name('t'), "tracing stop");
    }
}
