//! Properties of every parser of bytes a remote sends, on generated inputs: arbitrary bytes
//! never panic and never read past the bounds; what this tool writes, or a well-formed answer,
//! reads back as it was made.

use proptest::prelude::*;

use super::advertisement::read_service_advertisement;
use super::negotiation::read_acknowledgments;
use super::pktline::{MAX_PKT, Packet, PktReader, flush, pkt};
use super::report_status::parse_report;
use super::side_band::{read_answer, read_side_band};
use super::testing::T;

fn id_hex() -> impl Strategy<Value = String> {
    "[0-9a-f]{40}"
}

/// A ref name as the wire may carry it: any bytes but NUL, LF, space and `^`, under
/// `refs/`.
fn ref_name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no NUL/LF/space/^", |b| {
            !matches!(b, 0 | b'\n' | b' ' | b'^')
        }),
        1..60,
    )
    .prop_map(|tail| {
        let mut name = b"refs/".to_vec();
        name.extend(tail);
        name
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pkt_lines_read_back_as_written(
        lines in proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)), 0..40),
    ) {
        let mut out = Vec::new();
        for line in &lines {
            match line {
                Some(data) => pkt(&mut out, data).unwrap(),
                None => flush(&mut out),
            }
        }
        let mut reader = PktReader::new(&out[..]);
        for line in &lines {
            let packet = reader.next().unwrap();
            // An empty data packet ("0004") is legal and stays one.
            match line {
                Some(data) => prop_assert_eq!(packet, Some(Packet::Data(data.clone()))),
                None => prop_assert_eq!(packet, Some(Packet::Flush)),
            }
        }
        prop_assert_eq!(reader.next().unwrap(), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_packets_stay_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut reader = PktReader::new(&bytes[..]);
        for _ in 0..bytes.len() + 1 {
            match reader.next() {
                Ok(Some(Packet::Data(d))) => prop_assert!(d.len() <= MAX_PKT - 4),
                Ok(Some(Packet::Flush)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = read_service_advertisement(
            &mut PktReader::new(&bytes[..]), "git-upload-pack", false, T);
        let _ = read_service_advertisement(
            &mut PktReader::new(&bytes[..]), "git-receive-pack", true, T);
        let _ = read_acknowledgments(&mut PktReader::new(&bytes[..]));
        let _ = read_side_band(&mut PktReader::new(&bytes[..]));
        let _ = read_answer(&mut PktReader::new(&bytes[..]), false);
        let _ = parse_report(&bytes);
    }

    #[test]
    fn arbitrary_packets_never_panic_the_parsers(
        lines in proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..120)), 0..30),
    ) {
        let mut out = Vec::new();
        for line in &lines {
            match line {
                Some(data) => pkt(&mut out, data).unwrap(),
                None => flush(&mut out),
            }
        }
        let _ = read_service_advertisement(
            &mut PktReader::new(&out[..]), "git-upload-pack", false, T);
        let _ = read_service_advertisement(
            &mut PktReader::new(&out[..]), "git-receive-pack", true, T);
        let _ = read_acknowledgments(&mut PktReader::new(&out[..]));
        let _ = read_side_band(&mut PktReader::new(&out[..]));
        let _ = parse_report(&out);
    }

    #[test]
    fn an_advertisement_reads_back_its_refs_and_capabilities(
        refs in proptest::collection::vec((ref_name(), id_hex()), 1..30),
        caps in proptest::collection::vec("[a-z0-9-]{1,12}(=[a-z0-9/._-]{1,10})?", 0..8),
        smart_http in any::<bool>(),
    ) {
        let service = "git-upload-pack";
        let mut out = Vec::new();
        if smart_http {
            pkt(&mut out, format!("# service={service}\n").as_bytes()).unwrap();
            flush(&mut out);
        }
        for (i, (name, id)) in refs.iter().enumerate() {
            let mut line = format!("{id} ").into_bytes();
            line.extend_from_slice(name);
            if i == 0 {
                line.push(0);
                line.extend_from_slice(caps.join(" ").as_bytes());
            }
            line.push(b'\n');
            pkt(&mut out, &line).unwrap();
        }
        flush(&mut out);
        let ad = read_service_advertisement(
            &mut PktReader::new(&out[..]), service, smart_http, T).unwrap();
        let want: Vec<(Vec<u8>, git2::Oid)> = refs
            .iter()
            .map(|(n, id)| (n.clone(), git2::Oid::from_str(id).unwrap()))
            .collect();
        prop_assert_eq!(ad.refs, want);
        prop_assert_eq!(ad.capabilities, caps);
    }

    #[test]
    fn acknowledgments_in_any_mode_read_whole_before_the_pack(
        acks in proptest::collection::vec(
            (id_hex(), prop_oneof![Just(""), Just(" continue"), Just(" common"),
                Just(" ready")]), 0..12),
        nak in any::<bool>(),
        channel in 1u8..=3,
        first in proptest::collection::vec(any::<u8>(), 0..50),
    ) {
        let mut out = Vec::new();
        for (id, status) in &acks {
            pkt(&mut out, format!("ACK {id}{status}\n").as_bytes()).unwrap();
        }
        if nak {
            pkt(&mut out, b"NAK\n").unwrap();
        }
        let mut packet = vec![channel];
        packet.extend_from_slice(&first);
        pkt(&mut out, &packet).unwrap();
        let got = read_acknowledgments(&mut PktReader::new(&out[..])).unwrap();
        let want: Vec<git2::Oid> =
            acks.iter().map(|(id, _)| git2::Oid::from_str(id).unwrap()).collect();
        prop_assert_eq!(got.acked, want);
        prop_assert_eq!(got.nak, nak);
        prop_assert_eq!(got.first, Some(Packet::Data(packet)));
    }

    #[test]
    fn a_report_reads_back_through_side_band_in_any_pieces(
        results in proptest::collection::vec(
            (ref_name(), proptest::option::of("[a-z ]{1,20}")), 1..20),
        unpack_ok in any::<bool>(),
        piece in 1usize..200,
        progress in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut report = Vec::new();
        let unpack = if unpack_ok { "unpack ok\n" } else { "unpack index-pack failed\n" };
        pkt(&mut report, unpack.as_bytes()).unwrap();
        for (name, reason) in &results {
            let mut line = match reason {
                None => b"ok ".to_vec(),
                Some(_) => b"ng ".to_vec(),
            };
            line.extend_from_slice(name);
            if let Some(reason) = reason {
                line.push(b' ');
                line.extend_from_slice(reason.as_bytes());
            }
            line.push(b'\n');
            pkt(&mut report, &line).unwrap();
        }
        flush(&mut report);
        // Channel 1 in pieces of `piece` bytes, progress on channel 2 between them.
        let mut stream = Vec::new();
        for chunk in report.chunks(piece) {
            let mut one = vec![1u8];
            one.extend_from_slice(chunk);
            pkt(&mut stream, &one).unwrap();
            let mut two = vec![2u8];
            two.extend_from_slice(&progress);
            pkt(&mut stream, &two).unwrap();
        }
        flush(&mut stream);
        let band = read_side_band(&mut PktReader::new(&stream[..])).unwrap();
        prop_assert_eq!(&band.data, &report);
        let parsed = parse_report(&band.data).unwrap();
        prop_assert_eq!(parsed.unpack.is_ok(), unpack_ok);
        prop_assert_eq!(parsed.refs.len(), results.len());
        for ((name, reason), (got_name, got_reason)) in results.iter().zip(&parsed.refs) {
            prop_assert_eq!(name, got_name);
            prop_assert_eq!(reason.is_some(), got_reason.is_some());
        }
    }
}
