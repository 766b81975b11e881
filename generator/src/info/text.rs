//! The human-readable rendering of a [`Report`]: one block per topic, a
//! `key  value` line per fact, tables for VMAs and fds. The layout is stable (the
//! golden test in tests/e2e/inspect.rs compares it line by line).

use super::decode::human;
use super::report::{stored_share, Report};
use super::threads::ThreadInfo;
use std::fmt::Write;

/// Width of the key column.
const KEY: usize = 16;

struct Out(String);

impl Out {
    fn head(&mut self, title: &str) {
        if !self.0.is_empty() {
            self.0.push('\n');
        }
        self.0.push_str(title);
        self.0.push('\n');
    }

    fn kv(&mut self, key: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "  {key:<KEY$}{value}");
    }

    fn line(&mut self, s: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{s}");
    }
}

/// Addresses in tables: 12 hex digits cover user space.
fn addr(hex: &str) -> String {
    let v = u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap_or(0);
    format!("0x{v:012x}")
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

pub fn render(r: &Report) -> String {
    let mut o = Out(String::new());
    let f = &r.file;
    o.head(&format!("ckpt {}: {}", f.kind_name, f.path));
    o.kv("format", format!("version {}, page data checked by {}", f.format_version, f.page_data_checksums));
    if f.image_offset != 0 {
        o.kv("image offset", format!("{:#x}", f.image_offset));
    }
    o.kv("image size", format!("{} bytes ({})", f.image_size, human(f.image_size)));
    o.kv("file size", format!("{} bytes ({})", f.file_size, human(f.file_size)));

    o.head("frozen");
    o.kv("at", &r.frozen.utc);
    o.kv("kernel", &r.frozen.kernel_release);
    o.kv("pid", r.frozen.pid);
    o.kv("vdso functions", format!("{} recorded (for jumps from them on another kernel)", r.frozen.vdso_functions));
    o.kv("vdso here", &r.frozen.vdso_here);

    o.head("cpu features needed");
    o.kv("xcr0", format!("{}: {}", r.cpu.xcr0, or_none(&r.cpu.features)));
    o.kv("in use", or_none(&r.cpu.in_use));
    o.kv("xstate size", format!("{} bytes", r.cpu.xstate_size));

    let p = &r.process;
    o.head("process");
    o.kv("executable", p.executable.as_deref().unwrap_or("(unknown)"));
    o.kv("command line", p.cmdline.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" "));
    o.kv("code", format!("{}-{}", p.code[0], p.code[1]));
    o.kv("data", format!("{}-{}", p.data[0], p.data[1]));
    o.kv("brk", format!("{}-{}", p.brk[0], p.brk[1]));
    o.kv("stack start", &p.stack_start);
    o.kv("auxv", format!("{} entries", p.auxv_entries));
    o.kv(
        "restorer exit",
        match (&p.gadget_syscall_ret, &p.gadget_sigreturn) {
            (Some(a), Some(b)) => format!("`syscall; ret` at {a}, rt_sigreturn at {b} (in the target's text)"),
            _ => "no gadgets in the target's text: the restorer's mapping stays".into(),
        },
    );

    if let Some(st) = &p.state {
        o.kv("comm", &st.comm);
        o.kv("cwd", &st.cwd);
        o.kv("umask", &st.umask);
        if st.no_new_privs {
            o.kv("no_new_privs", "set");
        }
        o.kv("signal handlers", or_none(&st.signal_handlers));
        o.kv("pending signals", or_none(&st.pending_signals));
        if st.posix_timers != 0 {
            o.kv("posix timers", st.posix_timers);
        }
        if st.epoll_entries != 0 {
            o.kv("epoll entries", st.epoll_entries);
        }
    }

    if r.threads.len() > 1 {
        o.head(&format!("threads ({})", r.threads.len()));
        o.line(format!("  {:>7}  {:<16} {:<5} {}", "tid", "name", "state", "where"));
        for t in &r.threads {
            o.line(format!("  {:>7}  {:<16} {:<5} {}", t.tid, t.name, t.state, thread_summary(t)).trim_end());
        }
    }
    o.line(IDS_AT_RESUME.to_owned());
    for t in &r.threads {
        thread_block(&mut o, t);
    }

    o.head(&format!("memory ({} VMAs)", r.vmas.len()));
    o.line(format!(
        "  {:<29}  {:<5} {:<12} {:>9} {:>9}  {:<10} {}",
        "range", "perms", "kind", "size", "stored", "offset", "name"
    ));
    for v in &r.vmas {
        let mut name = v.name.clone();
        if !v.flags.is_empty() {
            name = format!("{name} ({})", v.flags.join(", ")).trim_start().to_owned();
        }
        o.line(
            format!(
                "  {}-{}  {:<5} {:<12} {:>9} {:>9}  {:<10} {}",
                addr(&v.start),
                addr(&v.end),
                v.perms,
                v.kind,
                human(v.size),
                if v.stored_bytes == 0 { "-".into() } else { human(v.stored_bytes) },
                v.file_offset.as_deref().unwrap_or(""),
                name
            )
            .trim_end(),
        );
    }

    o.head(&format!("fds ({})", r.fds.len()));
    o.line(format!("  {:>4}  {:<12} {:<24} {:>10} {:>9}  {}", "fd", "kind", "flags", "offset", "stored", "path"));
    for d in &r.fds {
        let mut flags = d.flags.clone().unwrap_or_else(|| "-".into());
        if d.in_flight {
            flags.push_str(" in flight");
        } else if d.cloexec {
            flags.push_str(" cloexec");
        }
        let mut path = match (d.kind, &d.path) {
            (_, Some(p)) => p.clone(),
            ("inherited", None) => format!("(the resumer's fd {})", d.fd),
            _ => String::new(),
        };
        if let Some(what) = &d.disconnected {
            path = format!("{path} ({what})");
        }
        if let Some(other) = d.same_as {
            path = format!("{path} (same open file as fd {other})").trim_start().to_owned();
        }
        o.line(
            format!(
                "  {:>4}  {:<12} {:<24} {:>10} {:>9}  {path}",
                d.fd,
                d.kind,
                flags,
                d.offset.map_or("-".into(), |x| x.to_string()),
                if d.stored_bytes == 0 { "-".into() } else { human(d.stored_bytes) },
            )
            .trim_end(),
        );
    }

    if !r.locks.is_empty() {
        o.head(&format!("file locks ({})", r.locks.len()));
        for l in &r.locks {
            let range = match (l.start, l.len) {
                (0, 0) => "whole file".to_owned(),
                (s, 0) => format!("bytes {s} to EOF"),
                (s, n) => format!("bytes {s}-{}", s + n - 1),
            };
            o.line(format!("  fd {:>4}  {:<5} {:<5}  {range}", l.fd, l.kind, l.mode));
        }
    }

    if !r.tree.is_empty() {
        o.head(&format!("process tree ({} processes)", r.tree.len()));
        for (i, m) in r.tree.iter().enumerate() {
            let what = match (i, m.zombie_status) {
                (0, _) => "root (this image)".to_owned(),
                (_, Some(s)) => format!("zombie, wait status {s:#x}"),
                (_, None) => format!("own image {} bytes", m.image_size),
            };
            o.line(format!("  pid {:>7}  parent {:>7}  group {:>7}  session {:>7}  {what}", m.pid, m.ppid, m.pgid, m.sid));
        }
    }

    let tt = &r.totals;
    o.head("totals");
    o.kv("VMAs", tt.vmas);
    o.kv("page runs", tt.runs);
    o.kv("pages stored", tt.pages_stored);
    o.kv("stored", stored_share(tt));
    if let Some(c) = tt.compressed_bytes {
        let pct = if tt.stored_bytes == 0 { 100.0 } else { 100.0 * c as f64 / tt.stored_bytes as f64 };
        o.kv("compressed", format!(
            "{} in the file for {} of pages ({pct:.1}%), {} LZ4 chunks (ckpt freeze --compress)",
            super::decode::human(c), super::decode::human(tt.stored_bytes), tt.compressed_chunks
        ));
    }
    if tt.working_set_ranges != 0 {
        o.kv("working set", format!(
            "{} pages in {} ranges, read in before the first instruction of a lazy resume (ckpt profile)",
            tt.working_set_pages, tt.working_set_ranges
        ));
    }
    o.0
}

/// What the resume does about the ids above (pid.rs and threads.rs in the restorer).
const IDS_AT_RESUME: &str = "  ids at resume   the same PID and TIDs: the real ones as root when all are free, \
else inside a new user + PID namespace made for the process; if neither works the resume stops \
(exit 114); with CKPT_SAME_PID=0 new ids, with a warning";

/// One line for the threads table: what it was doing and where.
fn thread_summary(t: &ThreadInfo) -> String {
    if t.exited {
        return "exited (pthread_exit)".into();
    }
    let place = t.stopped.as_ref().map_or(t.rip.clone(), |w| match &w.symbol {
        Some(s) => format!("{}+{:#x}", s.name, s.offset),
        None => w.rip.clone(),
    });
    match (t.syscall.state, t.syscall.name) {
        ("none", _) => format!("at {place}"),
        (st, name) => {
            let call = name.map_or_else(|| format!("syscall {}", t.syscall.number.unwrap_or(0)), str::to_owned);
            let what = match st {
                "restart" => "restarts",
                "eintr" => "EINTR",
                _ => "returned",
            };
            format!("in {call} ({what}) at {place}")
        }
    }
}

/// A thread's registers, state and where it stopped.
fn thread_block(o: &mut Out, t: &ThreadInfo) {
    o.head(&format!("thread {} ({})", t.tid, t.name));
    if t.exited {
        o.kv("exited", "the thread-group leader had called pthread_exit (it comes back as a zombie leader)");
        return;
    }
    o.kv("state", format!("{} ({}), {}", t.state, t.state_name, t.scheduling));
    o.kv("rip", &t.rip);
    o.kv("rsp", &t.rsp);
    o.kv("system call", &t.syscall.summary);
    o.kv("", format!("orig_rax {}, rax {}", t.syscall.orig_rax, t.syscall.rax));
    o.kv("fs_base", &t.fs_base);
    if t.gs_base != "0x0" {
        o.kv("gs_base", &t.gs_base);
    }
    o.kv(
        "rseq",
        t.rseq.as_ref().map_or("not registered".into(), |s| format!("{} ({} bytes, signature {})", s.addr, s.len, s.sig)),
    );
    o.kv("signal mask", format!("{} ({} blocked)", t.sigmask, or_none(&t.blocked_signals)));
    if let Some([sp, size]) = &t.altstack {
        o.kv("altstack", format!("{sp}, {size} bytes"));
    }
    if let Some(rl) = &t.robust_list {
        o.kv("robust list", rl);
    }
    o.line("  registers");
    for row in t.registers.0.chunks(3) {
        let cells: Vec<String> = row.iter().map(|(n, v)| format!("{n:>8} {v}")).collect();
        o.line(format!("  {}", cells.join(" ")));
    }
    let Some(w) = &t.stopped else { return };
    o.line("  where it stopped");
    match (&w.symbol, &w.module) {
        (Some(s), Some(m)) => o.line(format!("    {}+{:#x} ({m})", s.name, s.offset)),
        (None, Some(m)) => o.line(format!("    {} in {m}, build-id {}", w.rip, w.build_id.as_deref().unwrap_or("unknown"))),
        _ => o.line(format!("    {}", w.rip)),
    }
    if let (Some(_), Some(id)) = (&w.symbol, &w.build_id) {
        o.kv("build-id", id);
    }
    if let (Some(src), Some(bias)) = (w.elf_source, &w.load_bias) {
        o.kv("symbols from", format!("{src}, load bias {bias}"));
    }
    for n in &w.notes {
        o.kv("note", n);
    }
    for i in &w.instructions {
        let mark = if i.current { "=>" } else { "  " };
        o.line(format!("  {mark} {}  {:<30} {}", addr(&i.address), i.bytes, i.text).trim_end());
    }
}

/// An argument as a shell would need it quoted, so the command line reads
/// unambiguously.
fn shell_word(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_word("./deep"), "./deep");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn table_addresses_are_padded() {
        assert_eq!(addr("0x400000"), "0x000000400000");
    }
}
