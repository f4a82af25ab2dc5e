//! rtnetlink, by hand: the few messages the netns probe needs (links,
//! addresses, routes, namespace ids), parsed from their bytes, and the two
//! sockets it uses: one that asks the kernel to give a namespace an id
//! (nsid) in Tapio's, and one that listens to Tapio's namespace and, with
//! NETLINK_LISTEN_ALL_NSID, to every namespace that has such an id.
//!
//! Why ids: a NETLINK_ROUTE socket opened inside another namespace would
//! hold a reference to it and keep it alive, so deletion would never be
//! seen; an id holds none, makes the kernel send that namespace's
//! notifications to the listener (tagged with the id), and is dropped by
//! the kernel, with an RTM_DELNSID notification, when the namespace is
//! freed.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// <linux/rtnetlink.h>, <linux/net_namespace.h>, <linux/if_link.h>,
// <linux/netlink.h>: stable UAPI numbers.
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_NEWNSID: u16 = 88;
pub const RTM_DELNSID: u16 = 89;
pub const RTM_GETNSID: u16 = 90;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_NEW_NETNSID: u16 = 45;
const IFLA_NEW_IFINDEX: u16 = 49;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RTN_UNICAST: u8 = 1;
const RTPROT_KERNEL: u8 = 2;
const RT_TABLE_LOCAL: u32 = 255;
const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_LISTEN_ALL_NSID: i32 = 8;
/// The groups the listener joins: links, IPv4/IPv6 addresses and routes,
/// namespace ids.
const GROUPS: [u32; 6] = [1, 5, 7, 9, 11, 28];
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
pub const IFF_UP: u32 = 1;

/// An rtnetlink notification Tapio reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Link {
        new: bool,
        index: i32,
        name: String,
        kind: Option<String>,
        flags: u32,
        /// ifi_change: which flags changed; all ones for a new device.
        change: u32,
        /// DELLINK of a device moving away: the target's id (as the source
        /// namespace numbers it) and the device's index there.
        moved_to: Option<(i32, Option<i32>)>,
    },
    Addr {
        new: bool,
        index: u32,
        prefix: u8,
        addr: IpAddr,
        label: Option<String>,
    },
    Route {
        new: bool,
        dst: Option<IpAddr>,
        dst_len: u8,
        gateway: Option<IpAddr>,
        oif: Option<u32>,
        table: u32,
    },
    /// A namespace id was dropped: the namespace was freed.
    NsidDeleted(i32),
}

/// (type, payload) of each rtattr in `b`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let v = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, v))
    })
}

fn attr_str(v: &[u8]) -> String {
    let end = v.iter().position(|c| *c == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn attr_i32(v: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

fn attr_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

fn attr_ip(family: u8, v: &[u8]) -> Option<IpAddr> {
    match (family, v.len()) {
        (2, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
        (10, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
        _ => None,
    }
}

/// One notification's payload (after the nlmsghdr), or `None` for what
/// Tapio does not report (the kernel's own per-address routes, local
/// table, cached clones, non-unicast).
pub fn parse(ty: u16, p: &[u8]) -> Option<Change> {
    match ty {
        RTM_NEWLINK | RTM_DELLINK => {
            let h = p.get(..16)?;
            let index = i32::from_ne_bytes(h[4..8].try_into().ok()?);
            let flags = u32::from_ne_bytes(h[8..12].try_into().ok()?);
            let change = u32::from_ne_bytes(h[12..16].try_into().ok()?);
            let (mut name, mut kind, mut nsid, mut new_index) = (String::new(), None, None, None);
            for (t, v) in attrs(&p[16..]) {
                match t {
                    IFLA_IFNAME => name = attr_str(v),
                    IFLA_LINKINFO => {
                        kind = attrs(v)
                            .find(|(t, _)| *t == IFLA_INFO_KIND)
                            .map(|(_, k)| attr_str(k));
                    }
                    IFLA_NEW_NETNSID => nsid = attr_i32(v),
                    IFLA_NEW_IFINDEX => new_index = attr_i32(v),
                    _ => {}
                }
            }
            Some(Change::Link {
                new: ty == RTM_NEWLINK,
                index,
                name,
                kind,
                flags,
                change,
                moved_to: nsid.map(|n| (n, new_index)),
            })
        }
        RTM_NEWADDR | RTM_DELADDR => {
            let h = p.get(..8)?;
            let (family, prefix) = (h[0], h[1]);
            let index = u32::from_ne_bytes(h[4..8].try_into().ok()?);
            let (mut local, mut address, mut label) = (None, None, None);
            for (t, v) in attrs(&p[8..]) {
                match t {
                    IFA_LOCAL => local = attr_ip(family, v),
                    IFA_ADDRESS => address = attr_ip(family, v),
                    IFA_LABEL => label = Some(attr_str(v)),
                    _ => {}
                }
            }
            Some(Change::Addr {
                new: ty == RTM_NEWADDR,
                index,
                prefix,
                // IFA_LOCAL is the interface's own address where a
                // point-to-point link also has a peer (IFA_ADDRESS).
                addr: local.or(address)?,
                label,
            })
        }
        RTM_NEWROUTE | RTM_DELROUTE => {
            let h = p.get(..12)?;
            let (family, dst_len, table8, protocol, rtype) = (h[0], h[1], h[4], h[5], h[7]);
            let flags = u32::from_ne_bytes(h[8..12].try_into().ok()?);
            const RTM_F_CLONED: u32 = 0x200;
            if rtype != RTN_UNICAST || protocol == RTPROT_KERNEL || flags & RTM_F_CLONED != 0 {
                return None;
            }
            let (mut dst, mut gateway, mut oif, mut table) = (None, None, None, u32::from(table8));
            for (t, v) in attrs(&p[12..]) {
                match t {
                    RTA_DST => dst = attr_ip(family, v),
                    RTA_GATEWAY => gateway = attr_ip(family, v),
                    RTA_OIF => oif = attr_u32(v),
                    RTA_TABLE => table = attr_u32(v).unwrap_or(table),
                    _ => {}
                }
            }
            if table == RT_TABLE_LOCAL {
                return None;
            }
            Some(Change::Route {
                new: ty == RTM_NEWROUTE,
                dst,
                dst_len,
                gateway,
                oif,
                table,
            })
        }
        RTM_DELNSID => {
            let nsid = attrs(p.get(4..)?)
                .find(|(t, _)| *t == NETNSA_NSID)
                .and_then(|(_, v)| attr_i32(v))?;
            Some(Change::NsidDeleted(nsid))
        }
        _ => None,
    }
}

/// (type, payload) of each nlmsghdr-framed message in one datagram.
pub fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(b[0..4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            return None;
        }
        let p = &b[16..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, p))
    })
}

fn nl_socket(nonblocking: bool) -> io::Result<OwnedFd> {
    let mut ty = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
    if nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: plain syscall; the fd is owned right after.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, ty, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid "any" address.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: sa is a sockaddr_nl of the size passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn setsockopt_i32(fd: RawFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: v lives across the call; its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Asks the kernel for namespace ids, synchronously (one request at a time).
pub struct Requester {
    fd: OwnedFd,
    seq: u32,
}

impl Requester {
    pub fn new() -> io::Result<Self> {
        let fd = nl_socket(false)?;
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: tv lives across the call; its size is passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Self { fd, seq: 0 })
    }

    /// Send an nsid request about the namespace `netns` (an open nsfs fd)
    /// and return the kernel's answer: the id, or the error it gave.
    fn request(&mut self, ty: u16, netns: RawFd, flags: u16) -> io::Result<Option<i32>> {
        self.seq = self.seq.wrapping_add(1);
        let mut m = Vec::with_capacity(40);
        m.extend_from_slice(&0u32.to_ne_bytes()); // length, below
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // rtgenmsg
        if ty == RTM_NEWNSID {
            // -1: any free id.
            m.extend_from_slice(&8u16.to_ne_bytes());
            m.extend_from_slice(&NETNSA_NSID.to_ne_bytes());
            m.extend_from_slice(&(-1i32).to_ne_bytes());
        }
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NETNSA_FD.to_ne_bytes());
        m.extend_from_slice(&(netns as u32).to_ne_bytes());
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        // SAFETY: m is a valid buffer of the length passed.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        // Bounded: a stale answer to an earlier timed-out request is skipped.
        for _ in 0..8 {
            // SAFETY: buf is writable for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let b = &buf[..n as usize];
            if b.len() < 16
                || u32::from_ne_bytes(b[8..12].try_into().unwrap_or_default()) != self.seq
            {
                continue;
            }
            for (t, p) in messages(b) {
                match t {
                    NLMSG_ERROR => {
                        let e = p.get(..4).and_then(attr_i32).unwrap_or(0);
                        return if e == 0 {
                            Ok(None)
                        } else {
                            Err(io::Error::from_raw_os_error(-e))
                        };
                    }
                    RTM_NEWNSID => {
                        return Ok(attrs(p.get(4..).unwrap_or_default())
                            .find(|(t, _)| *t == NETNSA_NSID)
                            .and_then(|(_, v)| attr_i32(v)))
                    }
                    NLMSG_DONE => return Ok(None),
                    _ => {}
                }
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"))
    }

    /// The id of namespace `netns` in Tapio's, given one first if it has
    /// none. `None`: the kernel knows it under no id (it is Tapio's own).
    pub fn nsid_for(&mut self, netns: RawFd) -> io::Result<Option<i32>> {
        match self.request(RTM_NEWNSID, netns, NLM_F_ACK) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        self.request(RTM_GETNSID, netns, 0)
            .map(|id| id.filter(|i| *i >= 0))
    }
}

/// The listening socket: non-blocking, in every group Tapio reports, with
/// NETLINK_LISTEN_ALL_NSID.
pub struct Listener(OwnedFd);

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Listener {
    pub fn new() -> io::Result<Self> {
        let fd = nl_socket(true)?;
        let raw = fd.as_raw_fd();
        for g in GROUPS {
            setsockopt_i32(raw, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g as i32)?;
        }
        setsockopt_i32(raw, SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1)?;
        // Pod churn comes in bursts: room for them (forced as root; the
        // plain option is capped by rmem_max).
        let want = 4 << 20;
        if setsockopt_i32(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_err() {
            let _ = setsockopt_i32(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, want);
        }
        Ok(Self(fd))
    }

    /// One datagram into `buf`: its length and the namespace id it came
    /// from (`None`: Tapio's own namespace).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cbuf = [0u64; 8];
        // SAFETY: msghdr is plain data; zeroed then filled below.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.as_mut_ptr().cast();
        mh.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: every pointer in mh refers to live buffers above.
        let n = unsafe { libc::recvmsg(self.0.as_raw_fd(), &mut mh, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut nsid = None;
        // SAFETY: the CMSG_* walk stays within msg_controllen, set by the kernel.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&mh);
            while !c.is_null() {
                if (*c).cmsg_level == SOL_NETLINK && (*c).cmsg_type == NETLINK_LISTEN_ALL_NSID {
                    nsid = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()));
                }
                c = libc::CMSG_NXTHDR(&mh, c);
            }
        }
        Ok((n as usize, nsid.filter(|i| *i >= 0)))
    }
}

/// A device's name by index in Tapio's own namespace.
pub fn own_ifname(index: u32) -> Option<String> {
    let mut b = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: b has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, b.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    Some(crate::probes::cstr(&b, b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rta(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(v);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn ifinfo(index: i32, flags: u32, change: u32) -> Vec<u8> {
        let mut b = vec![0u8, 0, 1, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&change.to_ne_bytes());
        b
    }

    #[test]
    fn a_new_veth_and_a_move_away() {
        let mut p = ifinfo(7, 0, !0);
        p.extend(rta(IFLA_IFNAME, b"veth0\0"));
        p.extend(rta(IFLA_LINKINFO, &rta(IFLA_INFO_KIND, b"veth\0")));
        assert_eq!(
            parse(RTM_NEWLINK, &p),
            Some(Change::Link {
                new: true,
                index: 7,
                name: "veth0".into(),
                kind: Some("veth".into()),
                flags: 0,
                change: !0,
                moved_to: None
            })
        );
        let mut p = ifinfo(7, 0, !0);
        p.extend(rta(IFLA_IFNAME, b"veth0\0"));
        p.extend(rta(IFLA_NEW_NETNSID, &3i32.to_ne_bytes()));
        p.extend(rta(IFLA_NEW_IFINDEX, &2i32.to_ne_bytes()));
        match parse(RTM_DELLINK, &p) {
            Some(Change::Link {
                new: false,
                moved_to,
                ..
            }) => assert_eq!(moved_to, Some((3, Some(2)))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn addresses_and_routes() {
        let mut p = vec![2u8, 24, 0, 0];
        p.extend_from_slice(&5u32.to_ne_bytes());
        p.extend(rta(IFA_ADDRESS, &[198, 18, 0, 9]));
        p.extend(rta(IFA_LOCAL, &[198, 18, 0, 1]));
        p.extend(rta(IFA_LABEL, b"eth0\0"));
        assert_eq!(
            parse(RTM_NEWADDR, &p),
            Some(Change::Addr {
                new: true,
                index: 5,
                prefix: 24,
                addr: "198.18.0.1".parse().unwrap(),
                label: Some("eth0".into())
            })
        );
        // main table, boot protocol, unicast
        let mut r = vec![2u8, 24, 0, 0, 254, 3, 0, RTN_UNICAST, 0, 0, 0, 0];
        r.extend(rta(RTA_DST, &[198, 19, 0, 0]));
        r.extend(rta(RTA_GATEWAY, &[198, 18, 0, 2]));
        r.extend(rta(RTA_OIF, &5u32.to_ne_bytes()));
        assert_eq!(
            parse(RTM_NEWROUTE, &r),
            Some(Change::Route {
                new: true,
                dst: Some("198.19.0.0".parse().unwrap()),
                dst_len: 24,
                gateway: Some("198.18.0.2".parse().unwrap()),
                oif: Some(5),
                table: 254
            })
        );
        // the kernel's own prefix route of an address, and the local table
        let mut k = r.clone();
        k[5] = RTPROT_KERNEL;
        assert_eq!(parse(RTM_NEWROUTE, &k), None);
        let mut l = r.clone();
        l[4] = 255;
        assert_eq!(parse(RTM_NEWROUTE, &l), None);
    }

    #[test]
    fn nsid_deleted_and_truncated_input() {
        let mut p = vec![0u8; 4];
        p.extend(rta(NETNSA_NSID, &4i32.to_ne_bytes()));
        assert_eq!(parse(RTM_DELNSID, &p), Some(Change::NsidDeleted(4)));
        for ty in [RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_DELNSID] {
            assert_eq!(parse(ty, &[1, 2]), None);
        }
        // an attribute claiming more bytes than there are
        let mut p = ifinfo(1, 0, 0);
        p.extend_from_slice(&[200, 0, 3, 0, b'x']);
        assert!(
            matches!(parse(RTM_NEWLINK, &p), Some(Change::Link { name, .. }) if name.is_empty())
        );
        let mut m = Vec::new();
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&RTM_DELNSID.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(messages(&m).count(), 1);
        assert_eq!(messages(&m[..10]).count(), 0);
    }
}
