//! `ckpt check FILE`: whether this machine can resume a file, without running it,
//! and if not every reason why. The decision is `ckpt_format::compat::check`, the
//! very function the restorer stub runs before it changes anything, fed with this
//! machine as the stub will see it (machine.rs); so `check` and the resume agree.

mod machine;

pub use machine::clocks;

use anyhow::Result;
use ckpt_format::compat::{self, IdRoute, Plan, Refusal, Sink, VdsoPath};
use std::path::Path;

/// A message rendered into a `String`.
pub struct Text(pub String);

impl Sink for Text {
    fn s(&mut self, s: &str) {
        self.0.push_str(s);
    }
    fn b(&mut self, b: &[u8]) {
        self.0.push_str(&String::from_utf8_lossy(b));
    }
    fn dec(&mut self, v: u64) {
        self.0.push_str(&v.to_string());
    }
    fn hex(&mut self, v: u64) {
        self.0.push_str(&format!("{v:#x}"));
    }
}

/// The verdict for an image on this machine: each refusal as the stub would print
/// it ("STEP failed: ..."), and the plan.
pub struct Verdict {
    pub refusals: Vec<(Refusal, String)>,
    pub plan: Plan,
}

pub fn verdict(img: &crate::reader::ImageFile) -> Result<Verdict> {
    let t = img.tables()?;
    let here = machine::Here::probe();
    let m = here.machine();
    let mut found = Vec::new();
    let plan = compat::check(&img.header, &t, &m, &mut machine::Looker, &mut |r| found.push(r));
    let refusals = found
        .into_iter()
        .map(|r| {
            let mut s = Text(format!("{} failed: ", r.step()));
            r.describe(&img.header, &t, &m, &mut s);
            (r, s.0)
        })
        .collect();
    Ok(Verdict { refusals, plan })
}

/// What becomes of the vdso on this machine, in words: the plan's path and, for
/// trampolines, how many functions jump and how many make the system call.
pub fn vdso_text(img: &crate::reader::ImageFile) -> String {
    let Ok(v) = verdict(img) else { return "unknown (the file's tables cannot be read)".into() };
    let Ok(t) = img.tables() else { return v.plan.vdso.describe().into() };
    if v.plan.vdso != VdsoPath::Trampolines {
        return v.plan.vdso.describe().into();
    }
    let here = machine::Here::probe();
    let (mut jumps, mut calls, mut none) = (0, 0, 0);
    for s in t.vdso_syms {
        match ckpt_format::patch_for(t.string(s.name_off, s.name_len), &here.vdso, 0) {
            ckpt_format::Patch::Jump(_) => jumps += 1,
            ckpt_format::Patch::Syscall(_) => calls += 1,
            ckpt_format::Patch::Enosys => none += 1,
        }
    }
    format!("{} ({jumps} jump, {calls} make the system call, {none} return ENOSYS)", v.plan.vdso.describe())
}

/// How the process's clocks continue, in words.
pub fn clocks_text(plan: &Plan) -> String {
    match plan.timens {
        None => "continue as this machine's (they are ahead of the freeze's, or were not recorded)".into(),
        Some([mono, boot]) => format!(
            "this machine's are behind the freeze's: a time namespace moves CLOCK_MONOTONIC forward by {:.3} s and CLOCK_BOOTTIME by {:.3} s",
            mono as f64 / 1e9,
            boot as f64 / 1e9
        ),
    }
}

pub fn run(file: &Path) -> Result<bool> {
    let img = crate::reader::ImageFile::open(file)?;
    let v = verdict(&img)?;
    if v.refusals.is_empty() {
        println!("{}: can be resumed here", file.display());
        println!("  ids: {}", v.plan.ids.describe());
        println!("  clocks: {}", clocks_text(&v.plan));
        println!("  vdso: {}", vdso_text(&img));
        return Ok(true);
    }
    println!("{}: cannot be resumed here ({} reason{}):", file.display(), v.refusals.len(), if v.refusals.len() == 1 { "" } else { "s" });
    for (r, text) in &v.refusals {
        println!("  exit {}: {text}", r.code());
    }
    if v.plan.ids == IdRoute::Namespace {
        println!("  (ids: {})", v.plan.ids.describe());
    }
    Ok(false)
}
