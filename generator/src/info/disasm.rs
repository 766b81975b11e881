//! The instructions around the saved rip, decoded from the image's stored pages
//! with iced-x86 (Intel syntax). Decoding backwards on x86 is ambiguous, so the
//! instructions before rip are shown only when decoding from the start of the
//! enclosing symbol lands exactly on rip.

use super::memory::ImageMemory;
use iced_x86::{
    Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, OpKind, SymbolResolver, SymbolResult,
};
use serde::Serialize;

/// Instructions shown before and from rip.
const BEFORE: usize = 3;
const FROM: usize = 5;
/// Only decode from a symbol's start if it is this close before rip.
const MAX_PROLOGUE: u64 = 4096;
const MAX_INSN: usize = 15;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Insn {
    pub address: String,
    pub bytes: String,
    pub text: String,
    /// This is the instruction at rip.
    pub current: bool,
}

/// Names branch and rip-relative targets after symbols (absolute addresses).
struct Names(Vec<(u64, u64, String)>);

impl SymbolResolver for Names {
    fn symbol(
        &mut self,
        instruction: &Instruction,
        operand: u32,
        _instruction_operand: Option<u32>,
        address: u64,
        _address_size: u32,
    ) -> Option<SymbolResult<'_>> {
        let branch = matches!(instruction.op_kind(operand), OpKind::NearBranch64);
        let riprel = instruction.op_kind(operand) == OpKind::Memory && instruction.is_ip_rel_memory_operand();
        if !branch && !riprel {
            return None;
        }
        let i = self.0.partition_point(|(a, _, _)| *a <= address);
        let (start, size, name) = self.0.get(i.checked_sub(1)?)?;
        // A sized symbol must hold the address; an unsized one (an assembler
        // label) only names a nearby branch target, never data.
        let inside = if *size > 0 { address < start + size } else { branch && address - start < 256 };
        inside.then(|| SymbolResult::with_str(*start, name.as_str()))
    }
}

fn formatter(symbols: Vec<(u64, u64, String)>) -> IntelFormatter {
    let mut f = IntelFormatter::with_options(Some(Box::new(Names(symbols))), None);
    let o = f.options_mut();
    o.set_hex_prefix("0x");
    o.set_hex_suffix("");
    o.set_uppercase_hex(false);
    o.set_space_after_operand_separator(true);
    o.set_first_operand_char_index(8);
    o.set_rip_relative_addresses(false);
    f
}

fn decode_all(bytes: &[u8], ip: u64) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        if i.is_invalid() {
            break;
        }
        out.push(i);
    }
    out
}

/// Up to BEFORE instructions before rip and FROM from it. `func_start` is the
/// run-time start of the symbol holding rip, if known; `symbols` (absolute, sorted)
/// name branch targets.
pub fn around(mem: &ImageMemory, rip: u64, func_start: Option<u64>, symbols: Vec<(u64, u64, String)>) -> Vec<Insn> {
    let tail = FROM * MAX_INSN;
    let window = |insns: Vec<Instruction>| -> Option<Vec<Instruction>> {
        let idx = insns.iter().position(|i| i.ip() == rip)?;
        Some(insns[idx.saturating_sub(BEFORE)..(idx + FROM).min(insns.len())].to_vec())
    };
    let mut picked = func_start
        .filter(|&s| s <= rip && rip - s <= MAX_PROLOGUE)
        .and_then(|s| window(decode_all(&mem.read(s, (rip - s) as usize + tail), s)))
        .unwrap_or_default();
    if picked.is_empty() {
        picked = decode_all(&mem.read(rip, tail), rip).into_iter().take(FROM).collect();
    }
    let mut f = formatter(symbols);
    let hi = picked.last().map_or(rip, |i| i.next_ip());
    let lo = picked.first().map_or(rip, |i| i.ip());
    let raw = mem.read(lo, (hi - lo) as usize);
    picked
        .iter()
        .map(|i| {
            let mut text = String::new();
            f.format(i, &mut text);
            let at = (i.ip() - lo) as usize;
            let bytes = raw
                .get(at..at + i.len())
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            Insn { address: format!("{:#x}", i.ip()), bytes, text, current: i.ip() == rip }
        })
        .collect()
}
