//! Socket options held as plain integers (socket(7), ip(7), ipv6(7), tcp(7)) that a
//! program can set and read back, beyond the ones [`crate::SocketState`] carries
//! (buffer sizes, SO_PASSCRED, SO_LINGER, SO_KEEPALIVE, SO_REUSEADDR/PORT, timeouts)
//! and the ones set before bind (IPV6_V6ONLY, SO_BROADCAST, in the Fd record).
//!
//! One [`SockOpt`] per option whose value differs from a new socket of the same
//! family, type and protocol; the stub sets them on the finished socket, after its
//! queued data is back (SO_PEEK_OFF counts into that data). Only the options listed
//! in [`KNOWN`] are accepted on read, so an image cannot make the stub call
//! setsockopt with an arbitrary level and name.

use crate::records::Pod;

/// One option of one socket: setsockopt(fd, level, name, &value, 4); for
/// [`SO_ATTACH_FILTER`], `value` is the filter's instruction count and the
/// instructions (struct sock_filter, 8 bytes each) are `data_len` bytes of the
/// Strings section at `data_off` (both 0 for every other option).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOpt {
    pub fd: i32,
    pub level: i32,
    pub name: i32,
    pub value: i32,
    pub data_off: u32,
    pub data_len: u32,
}

// SAFETY: repr(C), six 4-byte integers, no padding; every bit pattern is valid.
unsafe impl Pod for SockOpt {}

/// At most this many options in an image (a few per socket).
pub const MAX_SOCKOPTS: u32 = crate::MAX_FDS * 8;

pub const SOL_SOCKET: i32 = 1;
pub const IPPROTO_IP: i32 = 0;
pub const IPPROTO_IPV6: i32 = 41;
pub const IPPROTO_TCP: i32 = 6;
/// A classic BPF socket filter (socket(7)); read back with SO_GET_FILTER, the same
/// number. A filter attached as an eBPF program (SO_ATTACH_BPF) does not read back
/// that way and is not carried.
pub const SO_ATTACH_FILTER: i32 = 26;
/// Most instructions of a classic filter (BPF_MAXINSNS).
pub const MAX_FILTER_INSNS: i32 = 4096;

/// An option this format carries: its level, number and name (for messages).
#[derive(Clone, Copy, Debug)]
pub struct KnownOpt {
    pub level: i32,
    pub name: i32,
    pub label: &'static str,
    /// Refused on stream sockets (the multicast ones: do_ip_setsockopt() and
    /// do_ipv6_setsockopt() say EINVAL for SOCK_STREAM), whose value the kernel
    /// still reports (an accepted TCP socket's multicast TTL is its peer's TTL).
    pub not_stream: bool,
}

const fn o(level: i32, name: i32, label: &'static str) -> KnownOpt {
    KnownOpt { level, name, label, not_stream: false }
}

const fn mcast(level: i32, name: i32, label: &'static str) -> KnownOpt {
    KnownOpt { level, name, label, not_stream: true }
}

/// Every option carried, in the order the stub sets them: IP_TOS and IPV6_TCLASS
/// before SO_PRIORITY, because setting the TOS also sets the priority
/// (ip_sock_set_tos() -> sk_priority = rt_tos2priority()).
///
/// Left out on purpose: values the kernel changes by itself on a live socket, which
/// would read back differently whatever was set (TCP_MAXSEG is the current MSS once
/// connected, TCP_WINDOW_CLAMP is computed, TCP_QUICKACK flips with traffic,
/// SO_INCOMING_CPU follows the receiving CPU).
pub const KNOWN: &[KnownOpt] = &[
    o(IPPROTO_IP, 1, "IP_TOS"),
    o(IPPROTO_IP, 2, "IP_TTL"),
    o(IPPROTO_IP, 6, "IP_RECVOPTS"),
    o(IPPROTO_IP, 8, "IP_PKTINFO"),
    o(IPPROTO_IP, 10, "IP_MTU_DISCOVER"),
    o(IPPROTO_IP, 11, "IP_RECVERR"),
    o(IPPROTO_IP, 12, "IP_RECVTTL"),
    o(IPPROTO_IP, 13, "IP_RECVTOS"),
    o(IPPROTO_IP, 15, "IP_FREEBIND"),
    o(IPPROTO_IP, 20, "IP_RECVORIGDSTADDR"),
    o(IPPROTO_IP, 21, "IP_MINTTL"),
    o(IPPROTO_IP, 22, "IP_NODEFRAG"),
    o(IPPROTO_IP, 24, "IP_BIND_ADDRESS_NO_PORT"),
    mcast(IPPROTO_IP, 33, "IP_MULTICAST_TTL"),
    mcast(IPPROTO_IP, 34, "IP_MULTICAST_LOOP"),
    o(IPPROTO_IP, 49, "IP_MULTICAST_ALL"),
    o(IPPROTO_IPV6, 16, "IPV6_UNICAST_HOPS"),
    mcast(IPPROTO_IPV6, 18, "IPV6_MULTICAST_HOPS"),
    mcast(IPPROTO_IPV6, 19, "IPV6_MULTICAST_LOOP"),
    o(IPPROTO_IPV6, 23, "IPV6_MTU_DISCOVER"),
    o(IPPROTO_IPV6, 25, "IPV6_RECVERR"),
    o(IPPROTO_IPV6, 49, "IPV6_RECVPKTINFO"),
    o(IPPROTO_IPV6, 51, "IPV6_RECVHOPLIMIT"),
    o(IPPROTO_IPV6, 62, "IPV6_DONTFRAG"),
    o(IPPROTO_IPV6, 66, "IPV6_RECVTCLASS"),
    o(IPPROTO_IPV6, 67, "IPV6_TCLASS"),
    o(IPPROTO_IPV6, 78, "IPV6_FREEBIND"),
    o(IPPROTO_TCP, 1, "TCP_NODELAY"),
    o(IPPROTO_TCP, 3, "TCP_CORK"),
    o(IPPROTO_TCP, 4, "TCP_KEEPIDLE"),
    o(IPPROTO_TCP, 5, "TCP_KEEPINTVL"),
    o(IPPROTO_TCP, 6, "TCP_KEEPCNT"),
    o(IPPROTO_TCP, 7, "TCP_SYNCNT"),
    o(IPPROTO_TCP, 8, "TCP_LINGER2"),
    o(IPPROTO_TCP, 9, "TCP_DEFER_ACCEPT"),
    o(IPPROTO_TCP, 16, "TCP_THIN_LINEAR_TIMEOUTS"),
    o(IPPROTO_TCP, 18, "TCP_USER_TIMEOUT"),
    o(IPPROTO_TCP, 23, "TCP_FASTOPEN"),
    o(IPPROTO_TCP, 25, "TCP_NOTSENT_LOWAT"),
    o(IPPROTO_TCP, 36, "TCP_INQ"),
    o(SOL_SOCKET, 1, "SO_DEBUG"),
    o(SOL_SOCKET, 5, "SO_DONTROUTE"),
    o(SOL_SOCKET, 10, "SO_OOBINLINE"),
    o(SOL_SOCKET, 11, "SO_NO_CHECK"),
    o(SOL_SOCKET, 12, "SO_PRIORITY"),
    o(SOL_SOCKET, 18, "SO_RCVLOWAT"),
    o(SOL_SOCKET, 29, "SO_TIMESTAMP"),
    o(SOL_SOCKET, 34, "SO_PASSSEC"),
    o(SOL_SOCKET, 35, "SO_TIMESTAMPNS"),
    o(SOL_SOCKET, 36, "SO_MARK"),
    o(SOL_SOCKET, 40, "SO_RXQ_OVFL"),
    o(SOL_SOCKET, 42, "SO_PEEK_OFF"),
    o(SOL_SOCKET, 45, "SO_SELECT_ERR_QUEUE"),
    o(SOL_SOCKET, 46, "SO_BUSY_POLL"),
    o(SOL_SOCKET, 60, "SO_ZEROCOPY"),
    // The filter before its lock: a locked filter cannot be attached (sk_attach_filter()).
    o(SOL_SOCKET, SO_ATTACH_FILTER, "SO_ATTACH_FILTER"),
    o(SOL_SOCKET, 44, "SO_LOCK_FILTER"),
];

/// Where (level, name) stands in [`KNOWN`], if it is carried.
pub fn known_index(level: i32, name: i32) -> Option<usize> {
    KNOWN.iter().position(|k| k.level == level && k.name == name)
}

/// The option's name for messages ("?" for one this format does not carry).
pub fn label(level: i32, name: i32) -> &'static str {
    known_index(level, name).map_or("?", |i| KNOWN[i].label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_pinned() {
        assert_eq!(core::mem::size_of::<SockOpt>(), 24);
    }

    #[test]
    fn known_options_are_unique_and_tos_comes_before_priority() {
        for (i, a) in KNOWN.iter().enumerate() {
            assert_eq!(known_index(a.level, a.name), Some(i), "{} listed twice", a.label);
        }
        let tos = known_index(IPPROTO_IP, 1).unwrap();
        let tclass = known_index(IPPROTO_IPV6, 67).unwrap();
        let prio = known_index(SOL_SOCKET, 12).unwrap();
        assert!(tos < prio && tclass < prio);
        assert!(known_index(SOL_SOCKET, SO_ATTACH_FILTER).unwrap() < known_index(SOL_SOCKET, 44).unwrap());
        assert_eq!(label(SOL_SOCKET, 12), "SO_PRIORITY");
        assert_eq!(label(SOL_SOCKET, 7), "?");
    }
}
