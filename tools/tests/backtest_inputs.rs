//! Input parsing of the research tools: CSV edge cases and the capture format.

use kimp::research::candles::{parse_candles, parse_funding, parse_fx};
use kimp::research::capture::{
    CapVenue, CaptureError, Frame, FrameKind, FrameReader, FrameWriter, RotatingWriter, read_file,
};
use kimp_core::units::{Price, SCALE};

#[path = "../../testdata/locate.rs"]
mod locate;

#[test]
fn fred_empty_values_are_carried_forward() {
    let text = "observation_date,DEXKOUS\n2021-01-01,\n2021-01-04,1086.5\n2021-01-05,\n2021-01-06,.\n2021-01-07,1095.2\n";
    let fx = parse_fx(text, 17 * 3_600_000).unwrap();
    // The first row has nothing to carry and is dropped; two empties are carried.
    assert_eq!(fx.points.len(), 4);
    assert_eq!(fx.carried, 2);
    assert!(fx.bad.is_empty());
    let day = |d: i64| 1_609_459_200_000 + d * 86_400_000; // 2021-01-01 + d days
    assert_eq!(fx.points[0].0, day(3) + 17 * 3_600_000, "effective from 17:00 UTC");
    assert_eq!(fx.at(day(5) + 18 * 3_600_000), Some(Price(10_865 * SCALE / 10)), "carried");
    assert_eq!(fx.at(day(6) + 18 * 3_600_000), Some(Price(10_952 * SCALE / 10)));
    assert_eq!(fx.at(day(3)), None, "before the first value is known");
    // The `date,rate` layout.
    let fx = parse_fx("date,rate\n2024-01-01,1300.5\n", 0).unwrap();
    assert_eq!(fx.points, vec![(1_704_067_200_000, Price(13_005 * SCALE / 10))]);
}

#[test]
fn bad_lines_are_reported_with_their_line_numbers() {
    let text = "open_time_utc,open,high,low,close,volume\n\
        2021-01-01T00:00:00Z,1,2,1,2,5\n\
        2021-01-01T01:00:00Z,1,2,1,abc,5\n\
        not-a-time,1,2,1,2,5\n\
        \n\
        2021-01-01T02:00:00Z,1,2,1,3,5\n\
        2021-01-01T03:00:00Z,1,2\n\
        2021-01-01T04:00:00Z,1,2,1,2,5\n";
    let c = parse_candles(text).unwrap();
    assert_eq!(c.bars.len(), 2, "lines 2 and 8 are the good rows");
    let lines: Vec<usize> = c.bad.iter().map(|b| b.line).collect();
    assert_eq!(lines, vec![3, 4, 6, 7]);
    assert!(c.bad[0].reason.contains("close"), "{}", c.bad[0]);
    assert!(c.bad[1].reason.contains("time"), "{}", c.bad[1]);
    assert!(c.bad[2].reason.contains("close outside"), "{}", c.bad[2]);
    assert!(c.bad[3].reason.contains("missing"), "{}", c.bad[3]);
    assert_eq!(c.interval_ms, 4 * 3_600_000);
    // FX and funding files report theirs too.
    let fx = parse_fx("date,rate\n2021-01-01,1000\n2021-02-30x,1\n2021-01-03,-5\n", 0).unwrap();
    assert_eq!(fx.bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 4]);
    let f = parse_funding(
        "timestamp,symbol,funding_rate\n1768233600000,BTCUSDT,0.00004650\nx,BTCUSDT,1\n",
    )
    .unwrap();
    assert_eq!(f.rows.len(), 1);
    assert_eq!(f.rows[0].rate_e8, 4_650);
    assert_eq!(f.bad[0].line, 3);
    assert!(parse_candles("time,foo\n1,2\n").is_err(), "a header without OHLC columns is an error");
}

#[test]
fn the_layouts_in_shared_data_parse() {
    let c = parse_candles("timestamp,open,high,low,close,volume,quote_volume,trades,close_time\n1704844800000,46113.90,47699.30,44291.50,46662.90,668657.474,1,2,1704931199999\n1704931200000,46113.90,47699.30,44291.50,46662.90,1,1,2,3\n").unwrap();
    assert_eq!(c.bars[0].open_ms, 1_704_844_800_000);
    assert_eq!(c.bars[0].close, Price(4_666_290 * SCALE / 100));
    assert_eq!(c.interval_ms, 86_400_000);
    let c = parse_candles("timestamp,open,high,low,close,volume\n2025-08-16 23:15:00,117420.38,117420.38,117287.31,117287.32,49.7\n").unwrap();
    assert_eq!(c.bars[0].open_ms, 1_755_386_100_000);
    let j = "{\"symbol\": \"BTCUSDT\", \"fundingTime\": 1748131200004, \"fundingRate\": \"0.00009794\", \"markPrice\": \"107698.90000000\", \"rateType\": \"Regular\"}\nnot json\n";
    let f = parse_funding(j).unwrap();
    assert_eq!(f.rows[0].rate_e8, 9_794);
    assert_eq!(f.rows[0].mark, Some(Price(10_769_890 * SCALE / 100)));
    assert_eq!(f.bad[0].line, 2);
    let f = kimp::research::candles::load_funding(&locate::testdata(
        "data/candles/2025-5m/binance-funding-BTCUSDT_2025-05-25_2025-08-31.jsonl",
    ))
    .unwrap();
    assert_eq!(f.rows.len(), 297);
    let c = kimp::research::candles::load_candles(&locate::testdata(
        "data/candles/2025-5m/binance_BTC_USDT_20250824_081437.csv.gz",
    ))
    .unwrap();
    assert!(c.bars.len() > 100 && c.bad.is_empty() && c.interval_ms == 900_000);
}

fn frame(ts: u64, venue: CapVenue, kind: FrameKind, payload: &[u8]) -> Frame<'_> {
    Frame { recv_ts_ns: ts, venue, kind, stream: 3, payload }
}

#[test]
fn capture_round_trip_torn_tail_and_versions() {
    let mut w = FrameWriter::new(Vec::new(), 42).unwrap();
    let msgs: Vec<Vec<u8>> = (0..1000).map(|i| format!("{{\"i\":{i}}}").into_bytes()).collect();
    for (i, m) in msgs.iter().enumerate() {
        let v = if i % 2 == 0 { CapVenue::Upbit } else { CapVenue::Binance };
        w.write(&frame(1_000 + i as u64, v, FrameKind::Ws, m)).unwrap();
    }
    w.write(&frame(5_000, CapVenue::Binance, FrameKind::Rest, b"")).unwrap();
    assert_eq!(w.frames(), 1001);
    let buf = w.into_inner();
    let mut r = FrameReader::new(&buf).unwrap();
    assert_eq!((r.version, r.created_ns), (1, 42));
    let got: Vec<Frame<'_>> = r.by_ref().collect();
    assert_eq!(got.len(), 1001);
    for (i, f) in got.iter().take(1000).enumerate() {
        assert_eq!(f.payload, &msgs[i][..]);
        assert_eq!(f.recv_ts_ns, 1_000 + i as u64);
        assert_eq!(f.stream, 3);
        assert_eq!(f.venue, if i % 2 == 0 { CapVenue::Upbit } else { CapVenue::Binance });
    }
    assert_eq!((got[1000].kind, got[1000].payload.len()), (FrameKind::Rest, 0));
    assert_eq!(r.torn_bytes, 0);
    // A crash mid-frame: the whole frames before it are read, the tail is reported.
    let cut = &buf[..buf.len() - 3 - 16];
    let mut r = FrameReader::new(cut).unwrap();
    assert_eq!(r.by_ref().count(), 999);
    assert!(r.torn_bytes > 0);
    // Not a capture, a newer version, a short header.
    assert_eq!(FrameReader::new(b"{\"json\":1}    ").unwrap_err(), CaptureError::BadMagic);
    let mut newer = buf.clone();
    newer[8] = 2;
    assert_eq!(FrameReader::new(&newer).unwrap_err(), CaptureError::Version(2));
    assert_eq!(FrameReader::new(&buf[..10]).unwrap_err(), CaptureError::Truncated);
    // Unknown venue bytes are skipped and counted, not misread.
    let mut odd = buf.clone();
    odd[24 + 12] = 9;
    let mut r = FrameReader::new(&odd).unwrap();
    assert_eq!(r.by_ref().count(), 1000);
    assert_eq!(r.unknown, 1);
}

#[test]
fn rotating_writer_starts_new_files_by_size_and_age() {
    let dir = std::env::temp_dir().join(format!("kimp-cap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = RotatingWriter::new(&dir, "t", 4_096, 10_000_000_000).unwrap();
    let payload = vec![b'x'; 1_000];
    for i in 0..10u64 {
        w.write(&frame(1_000_000_000 + i, CapVenue::Upbit, FrameKind::Ws, &payload)).unwrap();
    }
    // A file is closed once it holds >= 4,096 B: header 24 B + 5 frames of 1,016 B.
    w.write(&frame(30_000_000_000, CapVenue::Upbit, FrameKind::Ws, b"late")).unwrap();
    w.close().unwrap();
    assert_eq!(w.files.len(), 3, "{:?}", w.files);
    let counts: Vec<usize> =
        w.files.iter().map(|f| FrameReader::new(&read_file(f).unwrap()).unwrap().count()).collect();
    assert_eq!(counts, vec![5, 5, 1]);
    let last = read_file(w.files.last().unwrap()).unwrap();
    assert_eq!(FrameReader::new(&last).unwrap().next().unwrap().payload, b"late", "rotated by age");
    let _ = std::fs::remove_dir_all(&dir);
}
