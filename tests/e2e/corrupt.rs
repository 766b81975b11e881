//! Corrupted resume files: a frozen counter is resumed from copies truncated at
//! 20 points and from 200 copies with one flipped bit each (spread over the image
//! header, its page padding, the page data and the tables; never in the ELF part,
//! whose stub code may legitimately crash when flipped). Every run must end within
//! RUN_TIMEOUT by a normal exit: either a restorer refusal (exit 100..=113, or 120
//! for a compressed chunk, with a
//! `ckpt-restore:` line) or, for a byte nobody reads, the counter's correct ending.
//! A flip in a byte covered by a checksum (header, tables, page runs) must never
//! run to completion.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use ckpt_format::{check_header, tables_span, Header, SectionKind, Tables};

use crate::util::*;

/// Lines the counter prints, one per millisecond: a correct resume takes well under
/// a second.
const N: u64 = 200;
const PERIOD_MS: &str = "1";
/// One corrupted copy running to its end (or its refusal).
const RUN_TIMEOUT: Duration = Duration::from_secs(5);
const SEED: u64 = 0x5eed_c0ff_ee00_0001;
const TRUNCATIONS: usize = 20;
/// Bit flips per region of the image (200 in all).
const FLIPS: [(Region, usize); 4] = [
    (Region::Header, 30),
    (Region::HeaderPadding, 20),
    (Region::PageData, 90),
    (Region::Tables, 60),
];
/// Copies resumed at the same time.
const WORKERS: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Region {
    /// The Header record.
    Header,
    /// The rest of the header's page.
    HeaderPadding,
    /// From DATA_START to the first table.
    PageData,
    /// From the first table to the image end.
    Tables,
}

impl Region {
    fn name(self) -> &'static str {
        match self {
            Region::Header => "header",
            Region::HeaderPadding => "header padding",
            Region::PageData => "page data",
            Region::Tables => "tables",
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn in_range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo < hi, "empty range {lo:#x}..{hi:#x}");
        lo + self.next() % (hi - lo)
    }
}

/// Where the image lies in the .resume file and which of its bytes the restorer
/// verifies by a checksum.
struct Layout {
    /// File offset of the image.
    base: u64,
    image_size: u64,
    tables_lo: u64,
    /// Image ranges covered by a checksum the restorer verifies, with their names.
    covered: Vec<(u64, u64, String)>,
    /// Page runs the restorer always reads (not clean file pages).
    dirty: Vec<(u64, u64)>,
}

impl Layout {
    fn of(file: &[u8]) -> Layout {
        let (base, size) = ckpt_linker::find_image(file).expect("CKPT note of the .resume file");
        assert_eq!(
            base + size,
            file.len() as u64,
            "the image ends the .resume file"
        );
        let img = &file[base as usize..];
        assert_eq!(
            &img[..8],
            &ckpt_format::MAGIC,
            "no image magic at the noted offset {base:#x}"
        );
        let h = check_header(img, size).expect("valid header");
        let (lo, hi) = tables_span(&h);
        // Tables::parse wants 8-byte aligned memory.
        let mut words = vec![0u64; (hi - lo).div_ceil(8) as usize];
        // SAFETY: u64 accepts any bytes; the view covers exactly the vector.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8)
        };
        bytes[..(hi - lo) as usize].copy_from_slice(&img[lo as usize..hi as usize]);
        let t = Tables::parse(&h, &bytes[..(hi - lo) as usize], lo, false).expect("valid tables");
        let mut covered = vec![(0, Header::CRC_OFFSET as u64 + 4, "header".to_string())];
        for kind in SectionKind::ALL {
            let s = h.section(kind);
            if s.size != 0 {
                covered.push((
                    s.offset,
                    s.offset + s.size,
                    format!("{} table", kind.name()),
                ));
            }
        }
        // A clean run of a file mapping whose file is unchanged is never read (the
        // file provides those pages): its bytes are as unused as padding. The
        // others are read and checked.
        let mut dirty = Vec::new();
        for (i, r) in t.runs.iter().enumerate() {
            if r.flags & ckpt_format::RUN_FILE_CLEAN == 0 && h.flags & ckpt_format::HDR_COMPRESSED == 0 {
                covered.push((r.data_off, r.data_off + r.len, format!("page run {i}")));
                dirty.push((r.data_off, r.data_off + r.len));
            }
        }
        // A compressed image's runs are in their chunks (each checked before it
        // is decoded).
        for (i, c) in t.chunks.iter().enumerate() {
            if t.runs[c.run as usize].flags & ckpt_format::RUN_FILE_CLEAN == 0 {
                let end = c.data_off + c.stored_len as u64;
                covered.push((c.data_off, end, format!("compressed chunk {i} of page run {}", c.run)));
                dirty.push((c.data_off, end));
            }
        }

        assert!(!dirty.is_empty(), "the image has no page run that is always read");
        Layout {
            dirty,
            base,
            image_size: h.image_size,
            tables_lo: lo,
            covered,
        }
    }

    fn range(&self, r: Region) -> (u64, u64) {
        match r {
            Region::Header => (0, std::mem::size_of::<Header>() as u64),
            Region::HeaderPadding => (
                std::mem::size_of::<Header>() as u64,
                ckpt_format::DATA_START,
            ),
            Region::PageData => (ckpt_format::DATA_START, self.tables_lo),
            Region::Tables => (self.tables_lo, self.image_size),
        }
    }

    /// What covers image offset `off` with a checksum, if anything.
    fn covered_by(&self, off: u64) -> Option<&str> {
        self.covered
            .iter()
            .find(|(lo, hi, _)| (*lo..*hi).contains(&off))
            .map(|(_, _, n)| n.as_str())
    }
}

/// One corrupted copy.
struct Case {
    what: String,
    region: Region,
    /// Whether the corruption hits bytes the restorer checks (then it must refuse).
    covered: bool,
    /// Truncate the file to this length, or flip `bit` of the byte at `flip`.
    truncate: Option<u64>,
    flip: Option<(u64, u8)>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Restorer refusal with this exit code.
    Refused(i32),
    /// The counter ran to its correct end.
    Completed,
    /// Anything else (the message says what).
    Bad(String),
}

fn write_copy(path: &Path, data: &[u8], case: &Case) {
    let mut bytes = data.to_vec();
    if let Some(len) = case.truncate {
        bytes.truncate(len as usize);
    }
    if let Some((at, bit)) = case.flip {
        bytes[at as usize] ^= 1 << bit;
    }
    fs::write(path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).unwrap();
}


fn classify(r: io::Result<Output>, expected_stdout: &str) -> Outcome {
    let o = match r {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            return Outcome::Bad(format!("did not end within {RUN_TIMEOUT:?} (killed): {e}"))
        }
        Err(e) => return Outcome::Bad(format!("could not be run: {e}")),
    };
    let stdout = lossy(&o.stdout);
    let stderr = lossy(&o.stderr);
    if let Some(sig) = o.status.signal() {
        return Outcome::Bad(format!("killed by signal {sig}\nstderr:\n{stderr}"));
    }
    match o.status.code() {
        Some(0) if stdout == expected_stdout => Outcome::Completed,
        Some(0) => Outcome::Bad(format!(
            "exited 0 with wrong output: {} lines, last {:?}\nstderr:\n{stderr}",
            stdout.lines().count(),
            stdout.lines().last()
        )),
        Some(c @ (100..=113 | 120)) if stderr.lines().any(|l| l.starts_with("ckpt-restore:")) => {
            Outcome::Refused(c)
        }
        Some(c) => Outcome::Bad(format!("exit {c}\nstdout:\n{stdout}\nstderr:\n{stderr}")),
        None => Outcome::Bad(format!("no exit code: {}", o.status)),
    }
}

fn cases(l: &Layout) -> Vec<Case> {
    let mut rng = Rng(SEED);
    let mut out = Vec::new();
    // Truncations inside the image (cutting the ELF part is a different story: the
    // kernel maps the stub from the file). The first cut leaves no image at all.
    let strata: [(Region, usize); 4] = [
        (Region::Header, 3),
        (Region::HeaderPadding, 2),
        (Region::PageData, 11),
        (Region::Tables, 4),
    ];
    assert_eq!(strata.iter().map(|s| s.1).sum::<usize>(), TRUNCATIONS);
    for (region, n) in strata {
        let (lo, hi) = l.range(region);
        for k in 0..n {
            let at = if region == Region::Header && k == 0 {
                0
            } else {
                rng.in_range(lo, hi)
            };
            out.push(Case {
                what: format!("truncated at image offset {at:#x} ({})", region.name()),
                region,
                covered: true,
                truncate: Some(l.base + at),
                flip: None,
            });
        }
    }
    for (region, n) in FLIPS {
        let (lo, hi) = l.range(region);
        for k in 0..n {
            // Two thirds of the page-data flips land in runs that are always read.
            let at = if region == Region::PageData && k % 3 != 0 {
                let (rlo, rhi) = l.dirty[(rng.next() % l.dirty.len() as u64) as usize];
                rng.in_range(rlo, rhi)
            } else {
                rng.in_range(lo, hi)
            };
            let bit = (rng.next() % 8) as u8;
            let by = l.covered_by(at);
            out.push(Case {
                what: format!(
                    "bit {bit} of image byte {at:#x} flipped ({}, {})",
                    region.name(),
                    by.unwrap_or("not checksummed")
                ),
                region,
                covered: by.is_some(),
                truncate: None,
                flip: Some((l.base + at, bit)),
            });
        }
    }
    out
}

#[test]
fn truncated_and_bit_flipped_resume_files() {
    corrupted_copies("corrupt", &[]);
}

/// The same with the pages compressed (`--compress`): a flipped bit in a chunk's
/// stored bytes is refused (exit 120) before it is decoded.
#[test]
fn truncated_and_bit_flipped_compressed_resume_files() {
    corrupted_copies("corrupt_compressed", &["--compress"]);
}

fn corrupted_copies(name: &str, freeze_args: &[&str]) {
    let start = Instant::now();
    let dir = TestDir::new(name);
    let mut orig = spawn_fixture("counter", false, &[&N.to_string(), PERIOD_MS]);
    orig.wait_ready();
    let img = dir.image("counter.resume");
    freeze_ok(orig.pid(), &img, freeze_args);
    let before = orig.expect_killed_by_ckpt();

    // The intact file resumes correctly: its output is what every completed
    // corrupted copy must print.
    let baseline = match run_with_timeout(Command::new(&img), RUN_TIMEOUT) {
        Ok(o) if o.status.success() => lossy(&o.stdout),
        other => panic!("the intact file does not resume: {other:?}"),
    };
    let lines: Vec<String> = baseline.lines().map(str::to_owned).collect();
    assert_counts(
        &[before, lines].concat(),
        N,
        "original + resumed output of the intact file",
    );

    let data = fs::read(&img).unwrap();
    let layout = Layout::of(&data);
    let cases = cases(&layout);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; cases.len()]);
    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        for w in 0..WORKERS {
            let (cases, data, baseline, results, next, dir) =
                (&cases, &data, &baseline, &results, &next, &dir);
            s.spawn(move || {
                let path: PathBuf = dir.image(&format!("copy-{w}.resume"));
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    write_copy(&path, data, case);
                    let outcome = classify(run_with_timeout(Command::new(&path), RUN_TIMEOUT), baseline);
                    results.lock().unwrap()[i] = Some(outcome);
                }
                let _ = fs::remove_file(&path);
            });
        }
    });
    let results: Vec<Outcome> = results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();

    // Counts: per kind of corruption and region, how many refused (by exit code)
    // and how many completed.
    use std::collections::BTreeMap;
    let mut table: BTreeMap<(bool, Region), BTreeMap<Outcome, usize>> = BTreeMap::new();
    let mut failures = Vec::new();
    for (case, outcome) in cases.iter().zip(&results) {
        let key = match outcome {
            Outcome::Bad(_) => Outcome::Bad(String::new()),
            o => o.clone(),
        };
        *table
            .entry((case.truncate.is_some(), case.region))
            .or_default()
            .entry(key)
            .or_default() += 1;
        match outcome {
            Outcome::Bad(why) => failures.push(format!("{}: {why}", case.what)),
            Outcome::Completed if case.covered => failures.push(format!(
                "{}: ran to completion although the byte is checksummed",
                case.what
            )),
            _ => {}
        }
    }
    let mut report = format!(
        "{name}: {} copies of a {}-byte .resume (image at {:#x}) in {:.1?}\n",
        cases.len(),
        data.len(),
        layout.base,
        start.elapsed()
    );
    for ((trunc, region), outcomes) in &table {
        let n: usize = outcomes.values().sum();
        let desc: Vec<String> = outcomes
            .iter()
            .map(|(o, c)| match o {
                Outcome::Refused(code) => format!("{c} refused with {code}"),
                Outcome::Completed => format!("{c} completed"),
                Outcome::Bad(_) => format!("{c} FAILED"),
            })
            .collect();
        let kind = if *trunc {
            "truncated in"
        } else {
            "bit flip in"
        };
        report += &format!(
            "  {kind:>12} {:<14} {n:>3}: {}\n",
            region.name(),
            desc.join(", ")
        );
    }
    let refused = results
        .iter()
        .filter(|o| matches!(o, Outcome::Refused(_)))
        .count();
    let completed = results.iter().filter(|o| **o == Outcome::Completed).count();
    report += &format!(
        "  total: {refused} refused, {completed} completed, {} failed\n",
        failures.len()
    );
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{report}\n{} corrupted copies misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every truncation is a truncated image: nothing can complete.
    assert!(
        cases
            .iter()
            .zip(&results)
            .all(|(c, o)| c.truncate.is_none() || matches!(o, Outcome::Refused(_))),
        "{report}"
    );
}
