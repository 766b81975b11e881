//! One test per reason [`compat::check`] refuses an image, and for what it plans,
//! on the valid image of tests.rs and a described machine that can resume it.

extern crate std;

use crate::compat::*;
use crate::tests::{build, valid_parts, Aligned, Parts, V_CODE};
use crate::*;
use std::string::String;
use std::vec::Vec;

const VDSO_LEN: usize = 0x2000;

/// The valid image with a full-size vdso copy and its code mapped by reference.
fn parts() -> Parts {
    let mut p = valid_parts();
    p.vdso = (0..VDSO_LEN).map(|i| i as u8).collect();
    // An image without the old vdso's symbols: only the same vdso build resumes it.
    p.vdso_syms.clear();
    p.vmas[V_CODE].flags |= VMA_FILE_REF;
    p.vmas[V_CODE].file_crc = 0xabcd;
    (p.vmas[V_CODE].file_dev, p.vmas[V_CODE].file_ino, p.vmas[V_CODE].file_mtime_ns) = (1, 2, 3);
    p
}

/// A probe that finds the code file unchanged and every id free.
struct Fake {
    file: Option<FileId>,
    crc: u32,
    taken: u32,
}

impl Default for Fake {
    fn default() -> Self {
        Fake { file: Some(FileId { dev: 1, ino: 2, size: 0x2345, mtime_ns: 3 }), crc: 0xabcd, taken: 0 }
    }
}

impl Probe for Fake {
    fn id_taken(&mut self, tid: u32) -> bool {
        tid == self.taken
    }
    fn stat(&mut self, _: &[u8]) -> Option<FileId> {
        self.file
    }
    fn crc(&mut self, _: &[u8], _: u64, _: u64) -> Option<u32> {
        Some(self.crc)
    }
}

struct Text(String);

impl Sink for Text {
    fn s(&mut self, s: &str) {
        self.0.push_str(s);
    }
    fn b(&mut self, b: &[u8]) {
        self.0.push_str(&String::from_utf8_lossy(b));
    }
    fn dec(&mut self, v: u64) {
        self.0.push_str(&std::format!("{v}"));
    }
    fn hex(&mut self, v: u64) {
        self.0.push_str(&std::format!("{v:#x}"));
    }
}

const ALL_FEATURES: u32 = (1 << 10) - 1;

/// A machine that can resume `parts()` as it is.
fn machine(vdso: &[u8]) -> Machine<'_> {
    Machine {
        release: b"6.18.0-here",
        xcr0: 0x7,
        features: ALL_FEATURES,
        pid_max: 32768,
        mmap_min_addr: 4096,
        specials: [0x4000, 0, VDSO_LEN as u64],
        vdso,
        // Later than the freeze on every clock.
        clocks: [1_700_000_010_000_000_000, 20_000_000_000, 20_000_000_000, 20_000_000_000, 21_000_000_000],
        same_pid: true,
        pid: 1,
    }
}

/// Refusals (with their messages) and the plan for `p` on the machine `tune` makes.
fn run<'a>(p: &'a Parts, tune: impl FnOnce(&mut Machine<'a>), probe: &mut Fake) -> (Vec<(Refusal, String)>, Plan) {
    let img = build(p);
    let h = check_header(&img, img.len() as u64).unwrap();
    let (lo, hi) = tables_span(&h);
    let buf = Aligned::new(&img[lo as usize..hi as usize]);
    let t = Tables::parse(&h, buf.bytes(), lo, false).unwrap();
    let mut m = machine(&p.vdso);
    tune(&mut m);
    let mut got = Vec::new();
    let plan = check(&h, &t, &m, probe, &mut |r| got.push(r));
    let msgs = got
        .into_iter()
        .map(|r| {
            let mut s = Text(String::new());
            r.describe(&h, &t, &m, &mut s);
            (r, s.0)
        })
        .collect();
    (msgs, plan)
}

/// Exactly one refusal, `want`, whose message holds each of `words`.
fn refused<'a>(p: &'a Parts, tune: impl FnOnce(&mut Machine<'a>), probe: &mut Fake, want: Refusal, words: &[&str]) {
    let (got, _) = run(p, tune, probe);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [want]);
    for w in words {
        assert!(got[0].1.contains(w), "{:?} does not say {w:?}", got[0].1);
    }
}

#[test]
fn the_same_machine_resumes_with_the_real_ids() {
    let (got, plan) = run(&parts(), |_| {}, &mut Fake::default());
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(plan, Plan { ids: IdRoute::Here, vdso: VdsoPath::Same, timens: None });
}

#[test]
fn cpu_without_a_saved_feature() {
    let mut p = parts();
    p.xcr0 = 0xe7;
    refused(&p, |_| {}, &mut Fake::default(), Refusal::Cpu { saved: 0xe7, have: 0x7 }, &["AVX-512", "this CPU lacks it", "resume it on a CPU that has them"]);
}

#[test]
fn vdso_of_another_size_or_build() {
    refused(&parts(), |m| m.specials[0] = 0x5000, &mut Fake::default(), Refusal::VdsoSize { which: 0, want: 0x4000, have: 0x5000 }, &["[vvar]", "6.8.0-test", "6.18.0-here"]);
    let other: Vec<u8> = (0..VDSO_LEN).map(|i| (i as u8) ^ 1).collect();
    let p = parts();
    refused(&p, |m| m.vdso = &other, &mut Fake::default(), Refusal::VdsoBytes, &["vdso differs", "6.8.0-test"]);
}

#[test]
fn vdso_of_another_build_takes_trampolines() {
    let mut p = parts();
    p.vdso_syms = crate::vdso_tests::with_syms().vdso_syms.clone();
    p.strings = crate::vdso_tests::with_syms().strings.clone();
    let other: Vec<u8> = (0..VDSO_LEN).map(|i| (i as u8) ^ 1).collect();
    let (got, plan) = run(&p, |m| m.vdso = &other, &mut Fake::default());
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(plan.vdso, VdsoPath::Trampolines);
    // Another size of vdso or vvar, or no vdso at all, too.
    for tune in [|m: &mut Machine| m.specials = [0x3000, 0x2000, 0x1000], |m: &mut Machine| (m.specials, m.vdso) = ([0; 3], &[])] {
        let (got, plan) = run(&p, tune, &mut Fake::default());
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(plan.vdso, VdsoPath::Trampolines);
    }
    // The same build still moves.
    assert_eq!(run(&p, |_| {}, &mut Fake::default()).1.vdso, VdsoPath::Same);
    // A thread at the start of a function runs its jump; one inside the old code
    // cannot go on.
    let vdso = p.vmas[crate::tests::V_VDSO].start;
    p.threads[0].regs.rip = vdso + 0x800;
    assert!(run(&p, |m| m.vdso = &other, &mut Fake::default()).0.is_empty());
    p.threads[0].regs.rip = vdso + 0x812;
    refused(&p, |m| m.vdso = &other, &mut Fake::default(), Refusal::VdsoInside { tid: 4242, rip: vdso + 0x812, offset: 0x812 },
        &["thread 4242", "inside its vdso", "freeze it again", "6.8.0-test"]);
    // An image without the old symbols is refused as before.
    let mut old = parts();
    old.threads[0].regs.rip = vdso + 0x812;
    assert_eq!(run(&old, |_| {}, &mut Fake::default()).1.vdso, VdsoPath::Same);
}

#[test]
fn each_missing_kernel_feature() {
    let mut p = parts();
    p.files[0].flags = FILE_MFD_EXEC;
    for f in [FEAT_CLONE3_SET_TID, FEAT_PR_SET_MM_MAP, FEAT_RSEQ, FEAT_MAP_FIXED_NOREPLACE, FEAT_MFD_EXEC] {
        let (name, since) = feature_name(f);
        let (got, _) = run(&p, |m| m.features &= !f, &mut Fake::default());
        assert_eq!(got.len(), 1, "{name}: {got:?}");
        assert!(matches!(got[0].0, Refusal::Feature { feature, .. } if feature == f), "{name}: {got:?}");
        for w in [name, since, "6.8.0-test", "6.18.0-here"] {
            assert!(got[0].1.contains(w), "{name}: {:?} lacks {w:?}", got[0].1);
        }
        assert_eq!(got[0].0.code(), EXIT_KERNEL);
    }
    // Needed only by what the image holds: a process without rseq or such memfds.
    let mut p = parts();
    p.threads[0].rseq_addr = 0;
    p.files[0].flags &= !(FILE_MFD_EXEC | FILE_MFD_NOEXEC_SEAL);
    let (got, _) = run(&p, |m| m.features &= !(FEAT_RSEQ | FEAT_MFD_EXEC), &mut Fake::default());
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn clocks_behind_need_a_time_namespace() {
    // A reboot: every clock restarted near zero, the wall clock 10 s later.
    let rebooted = |m: &mut Machine| m.clocks = [1_700_000_010_000_000_000, 1_000, 1_000, 1_000, 2_000];
    let (got, plan) = run(&parts(), rebooted, &mut Fake::default());
    assert!(got.is_empty(), "{got:?}");
    // Each clock continues from its saved value plus the 10 s that passed; the
    // monotonic offset is the largest of the three monotonic clocks' needs.
    let k = parts().kernel.unwrap();
    let ten = 10_000_000_000;
    let mono = [CLK_MONOTONIC, CLK_MONOTONIC_RAW, CLK_MONOTONIC_COARSE].map(|i| k.clocks[i] + ten - 1_000).into_iter().max();
    assert_eq!(plan.timens, Some([mono.unwrap(), k.clocks[CLK_BOOTTIME] + ten - 2_000]));
    // A wall clock behind the freeze's adds nothing.
    let (_, plan) = run(&parts(), |m| m.clocks = [0, 0, 0, 0, 0], &mut Fake::default());
    assert_eq!(plan.timens, Some([k.clocks[CLK_MONOTONIC_RAW], k.clocks[CLK_BOOTTIME]]));
    // Without time namespaces, or without a way to make one, it is refused.
    refused(&parts(), |m| { rebooted(m); m.features &= !FEAT_TIME_NS }, &mut Fake::default(),
        Refusal::Feature { feature: FEAT_TIME_NS, need: "its clocks never go back, and this machine's are behind the freeze's (a reboot)" },
        &["time namespaces", "Linux 5.6"]);
    let (got, _) = run(&parts(), |m| { rebooted(m); m.features &= !(FEAT_TIME_NS_HERE | FEAT_USER_NS) }, &mut Fake::default());
    assert!(got.iter().any(|g| matches!(g.0, Refusal::Feature { feature: FEAT_USER_NS, .. })), "{got:?}");
    // Clocks ahead of the saved ones plan none, even when less than the wall
    // clock's time has passed on them.
    let (_, plan) = run(&parts(), |m| m.clocks = [1_800_000_000_000_000_000, 5_000_100_000, 5_000_100_000, 5_000_000_000, 6_000_000_000], &mut Fake::default());
    assert_eq!(plan.timens, None);
    // An image without clocks plans none.
    let mut p = parts();
    p.kernel = None;
    assert_eq!(run(&p, rebooted, &mut Fake::default()).1.timens, None);
}

#[test]
fn id_above_pid_max() {
    refused(&parts(), |m| m.pid_max = 4000, &mut Fake::default(), Refusal::PidMax { tid: 4242, pid_max: 4000 }, &["4242", "pid_max 4000", "32768 where it was frozen", "CKPT_SAME_PID=0"]);
    // Not with new ids.
    let (got, plan) = run(&parts(), |m| (m.pid_max, m.same_pid) = (4000, false), &mut Fake::default());
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(plan.ids, IdRoute::New);
}

#[test]
fn vma_below_mmap_min_addr() {
    refused(&parts(), |m| m.mmap_min_addr = 0x50_0000, &mut Fake::default(), Refusal::MinAddr { vma: 0, start: 0x40_0000, min: 0x50_0000 }, &["mmap_min_addr"]);
}

#[test]
fn referenced_file_missing_short_or_changed() {
    let exe = core::str::from_utf8(crate::tests::EXE).unwrap();
    let mut gone = Fake { file: None, ..Fake::default() };
    refused(&parts(), |_| {}, &mut gone, Refusal::FileMissing { vma: V_CODE as u32 }, &[exe, "missing", "--embed-files"]);
    let mut short = Fake { file: Some(FileId { size: 0x1000, ..Fake::default().file.unwrap() }), ..Fake::default() };
    refused(&parts(), |_| {}, &mut short, Refusal::FileMissing { vma: V_CODE as u32 }, &[exe]);
    let mut longer = Fake { file: Some(FileId { ino: 9, size: 0x3000, ..Fake::default().file.unwrap() }), ..Fake::default() };
    refused(&parts(), |_| {}, &mut longer, Refusal::FileChanged { vma: V_CODE as u32, size: true }, &[exe, "another size"]);
    let mut other = Fake { file: Some(FileId { ino: 9, ..Fake::default().file.unwrap() }), crc: 1, ..Fake::default() };
    refused(&parts(), |_| {}, &mut other, Refusal::FileChanged { vma: V_CODE as u32, size: false }, &[exe, "other contents"]);
    // Another inode with the same bytes is accepted.
    let mut copy = Fake { file: Some(FileId { ino: 9, ..Fake::default().file.unwrap() }), ..Fake::default() };
    assert!(run(&parts(), |_| {}, &mut copy).0.is_empty());
}

#[test]
fn ids_taken_or_unprivileged() {
    let mut busy = Fake { taken: 4242, ..Fake::default() };
    let (got, plan) = run(&parts(), |_| {}, &mut busy);
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(plan.ids, IdRoute::Namespace);
    assert_eq!(run(&parts(), |m| m.features &= !FEAT_SET_TID_HERE, &mut Fake::default()).1.ids, IdRoute::Namespace);
    assert_eq!(run(&parts(), |m| m.pid = 4242, &mut Fake::default()).1.ids, IdRoute::Already);
    refused(&parts(), |m| m.features &= !FEAT_USER_NS, &mut Fake { taken: 4242, ..Fake::default() }, Refusal::Ids { tid: 4242, taken: true }, &["another process has it"]);
    refused(&parts(), |m| m.features &= !(FEAT_USER_NS | FEAT_SET_TID_HERE), &mut Fake::default(), Refusal::Ids { tid: 4242, taken: false }, &["CAP_CHECKPOINT_RESTORE"]);
}

#[test]
fn seccomp_without_privilege() {
    refused(&parts(), |m| m.features &= !FEAT_SYS_ADMIN, &mut Fake::default(), Refusal::Seccomp, &["seccomp", "CAP_SYS_ADMIN"]);
    let mut p = parts();
    p.process.as_mut().unwrap().flags |= PROC_NO_NEW_PRIVS;
    assert!(run(&p, |m| m.features &= !FEAT_SYS_ADMIN, &mut Fake::default()).0.is_empty());
}

#[test]
fn every_refusal_is_reported_at_once() {
    let mut p = parts();
    p.xcr0 = 0xe7;
    let (got, _) = run(&p, |m| (m.pid_max, m.features) = (4000, ALL_FEATURES & !FEAT_PR_SET_MM_MAP), &mut Fake { file: None, ..Fake::default() });
    let codes: Vec<u8> = got.iter().map(|g| g.0.code()).collect();
    assert_eq!(codes, [EXIT_CPU, EXIT_KERNEL, EXIT_PROCESS, EXIT_MAP_VMA]);
}
