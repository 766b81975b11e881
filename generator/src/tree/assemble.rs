//! The file of a tree: the root's image (with the tree sections), then every
//! other process's own image at its page-aligned offset from the tree data start
//! (format/src/tree.rs). Into a file each image is copied at its offset; into a
//! stream (`-o -`) the gaps between them are written as zeros.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Where the tree's file goes.
pub enum Dest<'a> {
    File(&'a File),
    Stream(&'a mut dyn Write),
}

/// Append `images` ((offset from the tree data start, its file), in ascending
/// offsets) after a root image written as `root_len` bytes, whose image proper
/// (without the restorer in front of a `.resume`) is `root_image` bytes; returns
/// the length of the whole file.
pub fn append(dest: Dest, root_len: u64, root_image: u64, images: Vec<(u64, File)>) -> io::Result<u64> {
    let data_at = root_len - root_image + ckpt_format::tree_data_start(root_image);
    let mut total = root_len;
    match dest {
        Dest::File(mut file) => {
            for (off, mut f) in images {
                file.seek(SeekFrom::Start(data_at + off))?;
                f.seek(SeekFrom::Start(0))?;
                total = data_at + off + io::copy(&mut f, &mut file)?;
            }
        }
        Dest::Stream(w) => {
            let zeros = [0u8; 64 << 10];
            for (off, mut f) in images {
                let mut gap = data_at + off - total;
                while gap > 0 {
                    let n = gap.min(zeros.len() as u64) as usize;
                    w.write_all(&zeros[..n])?;
                    gap -= n as u64;
                }
                f.seek(SeekFrom::Start(0))?;
                total = data_at + off + io::copy(&mut f, w)?;
            }
            w.flush()?;
        }
    }
    Ok(total)
}
