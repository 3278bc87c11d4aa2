//! Traced frames as a pcapng capture that Wireshark and tshark open, written with the
//! `pcap-file` crate (2.x writes Enhanced Packet Blocks with options, so nothing is
//! hand-encoded here).
//!
//! One Interface Description Block per podfwd port (interface id = `PortId`, named as
//! the hello record says, Ethernet, snap length 256, nanosecond timestamps: `pcap-file`
//! writes EPB times in nanoseconds, so `if_tsresol` = 9 must say so). Each frame is one
//! Enhanced Packet Block on its ingress port whose `opt_comment` is the verdict and the
//! worker, `drop unknown_vtep; cpu 1` or `tx port 1 (veth-pod); cpu 0`; frames missed
//! before it are its `epb_dropcount`.

use super::protocol::{FrameRecord, WireVerdict};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, PcapError};
use std::borrow::Cow;
use std::io::Write;
use std::time::Duration;

/// A capture being written.
pub struct PcapngSink<W: Write> {
    writer: PcapNgWriter<W>,
    ports: Vec<String>,
    /// Interface Description Blocks written so far (ids `0..interfaces`).
    interfaces: usize,
    snap_len: u32,
}

/// The `opt_comment` of a frame: verdict first, so `frame.comment contains "drop"` finds
/// every drop.
pub fn comment(f: &FrameRecord, ports: &[String]) -> String {
    match &f.verdict {
        WireVerdict::Tx(p) => match ports.get(usize::from(*p)) {
            Some(name) => format!("tx port {p} ({name}); cpu {}", f.worker),
            None => format!("tx port {p}; cpu {}", f.worker),
        },
        v => format!("{v}; cpu {}", f.worker),
    }
}

impl<W: Write> PcapngSink<W> {
    /// Writes the section header and one interface per port.
    pub fn new(out: W, ports: &[String], snap_len: u16) -> Result<Self, PcapError> {
        let section = SectionHeaderBlock {
            options: vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
                "podfwd trace {}",
                crate::build_info::VERSION
            )))],
            ..Default::default()
        };
        let mut sink = PcapngSink {
            writer: PcapNgWriter::with_section_header(out, section)?,
            ports: ports.to_vec(),
            interfaces: 0,
            snap_len: u32::from(snap_len),
        };
        sink.interfaces_up_to(ports.len())?;
        Ok(sink)
    }

    /// Describes interfaces until `n` exist (a port the hello did not name gets one
    /// named `port N` when its first frame comes).
    fn interfaces_up_to(&mut self, n: usize) -> Result<(), PcapError> {
        while self.interfaces < n {
            let name = self
                .ports
                .get(self.interfaces)
                .cloned()
                .unwrap_or_else(|| format!("port {}", self.interfaces));
            self.writer.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: self.snap_len,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(name)),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            })?;
            self.interfaces += 1;
        }
        Ok(())
    }

    /// Writes one frame; `missed` frames were lost just before it (0: none).
    pub fn write_frame(&mut self, f: &FrameRecord, missed: u64) -> Result<(), PcapError> {
        self.interfaces_up_to(usize::from(f.ingress) + 1)?;
        let mut options = vec![EnhancedPacketOption::Comment(Cow::Owned(comment(
            f,
            &self.ports,
        )))];
        if missed > 0 {
            options.push(EnhancedPacketOption::DropCount(missed));
        }
        self.writer.write_pcapng_block(EnhancedPacketBlock {
            interface_id: u32::from(f.ingress),
            timestamp: Duration::from_nanos(f.ts_ns),
            original_len: f.orig_len,
            data: Cow::Borrowed(&f.data),
            options,
        })?;
        Ok(())
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.writer.get_mut().flush()
    }

    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcapng::{Block, PcapNgReader};

    fn frame(ts_ns: u64, ingress: u16, verdict: WireVerdict, len: usize) -> FrameRecord {
        FrameRecord {
            ts_ns,
            worker: 3,
            ingress,
            verdict,
            orig_len: len as u32 + 100,
            data: (0..len).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn frames_read_back_with_lengths_nanosecond_times_comments_and_drop_counts() {
        let ports = vec!["eth0".to_string(), "veth-pod".to_string()];
        let frames = [
            frame(
                1_764_819_000_123_456_789,
                0,
                WireVerdict::Drop("unknown_vtep".into()),
                97,
            ),
            frame(1_764_819_000_223_456_789, 1, WireVerdict::Tx(0), 256),
            frame(1_764_819_001_000_000_001, 3, WireVerdict::ToKernel, 1),
        ];
        let mut sink = PcapngSink::new(Vec::new(), &ports, 256).unwrap();
        sink.write_frame(&frames[0], 0).unwrap();
        sink.write_frame(&frames[1], 7).unwrap();
        sink.write_frame(&frames[2], 0).unwrap();
        let bytes = sink.into_inner();

        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let mut ifaces = Vec::new();
        let mut packets = Vec::new();
        while let Some(b) = r.next_block() {
            match b.unwrap() {
                Block::InterfaceDescription(i) => ifaces.push(i.into_owned()),
                Block::EnhancedPacket(p) => packets.push(p.into_owned()),
                other => panic!("unexpected block {other:?}"),
            }
        }
        let names: Vec<_> = ifaces
            .iter()
            .map(|i| {
                assert_eq!(i.linktype, DataLink::ETHERNET);
                assert_eq!(i.snaplen, 256);
                assert!(i
                    .options
                    .contains(&InterfaceDescriptionOption::IfTsResol(9)));
                i.options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap()
            })
            .collect();
        // Port 3 was not named by the hello: described when its first frame came.
        assert_eq!(names, ["eth0", "veth-pod", "port 2", "port 3"]);
        assert_eq!(packets.len(), 3);
        let comments = [
            "drop unknown_vtep; cpu 3",
            "tx port 0 (eth0); cpu 3",
            "to_kernel; cpu 3",
        ];
        for ((p, f), c) in packets.iter().zip(&frames).zip(comments) {
            assert_eq!(p.interface_id, u32::from(f.ingress));
            assert_eq!(p.timestamp, Duration::from_nanos(f.ts_ns));
            assert_eq!(p.original_len, f.orig_len);
            assert_eq!(&p.data[..], &f.data[..]);
            assert_eq!(p.options[0], EnhancedPacketOption::Comment(c.into()));
        }
        assert_eq!(packets[1].options[1], EnhancedPacketOption::DropCount(7));
        assert_eq!(packets[0].options.len(), 1);
    }
}
