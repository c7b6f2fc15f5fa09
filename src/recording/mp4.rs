//! An MP4 (ISO BMFF) file with one Opus audio track: how a recording's audio chunks are stored.
//!
//! Why Opus in MP4: AWS writes its audio chunks as `.mp4`, and applications look for that name;
//! the mixer's output is encoded with the Opus encoder the server already has (AAC would need a
//! second codec in the build); Chromium's `<audio>` and ffmpeg both play Opus in MP4 (the
//! mapping is "Encapsulation of Opus in ISO Base Media File Format", an `Opus` sample entry with
//! a `dOps` box). The file is written whole with the index (`moov`) before the data (`mdat`),
//! so that a browser can start playing it before it has all of it.

/// Samples per second of the track (Opus always decodes at 48 kHz).
const SAMPLE_RATE: u32 = 48_000;
/// Seconds from 1904-01-01 (MP4's epoch) to 1970-01-01.
const MP4_EPOCH_OFFSET: u64 = 2_082_844_800;

/// One Opus packet of the track and how many 48 kHz samples it plays.
#[derive(Debug, Clone)]
pub struct OpusSample {
    pub packet: Vec<u8>,
    pub samples: u32,
}

/// The track's header fields.
#[derive(Debug, Clone, Copy)]
pub struct OpusTrack {
    /// Samples the decoder drops at the start (the encoder's look-ahead), RFC 7845's pre-skip.
    pub pre_skip: u16,
    /// When the recording of this file began, seconds since the Unix epoch.
    pub created_unix_secs: u64,
}

/// The whole file: `ftyp`, `moov`, `mdat`.
pub fn opus_file(track: OpusTrack, samples: &[OpusSample]) -> Vec<u8> {
    let ftyp = ftyp();
    // The chunk offset in `stco` depends on the size of `moov`, which does not depend on the
    // offset's value: build it once to measure it, then with the real offset.
    let provisional = moov(track, samples, 0);
    let data_offset = ftyp.len() + provisional.len() + 8;
    let moov = moov(
        track,
        samples,
        u32::try_from(data_offset).unwrap_or(u32::MAX),
    );
    let payload: usize = samples.iter().map(|s| s.packet.len()).sum();
    let mut file = Vec::with_capacity(data_offset + payload);
    file.extend_from_slice(&ftyp);
    file.extend_from_slice(&moov);
    let mut mdat = Vec::with_capacity(payload);
    for sample in samples {
        mdat.extend_from_slice(&sample.packet);
    }
    file.extend_from_slice(&boxed(b"mdat", &mdat));
    file
}

fn ftyp() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(b"isom");
    body.extend_from_slice(&512u32.to_be_bytes());
    for brand in [b"isom", b"iso2", b"mp41"] {
        body.extend_from_slice(brand);
    }
    boxed(b"ftyp", &body)
}

fn moov(track: OpusTrack, samples: &[OpusSample], data_offset: u32) -> Vec<u8> {
    let duration: u64 = samples.iter().map(|s| u64::from(s.samples)).sum();
    let duration_ms = duration * 1000 / u64::from(SAMPLE_RATE);
    let time = u32::try_from(track.created_unix_secs + MP4_EPOCH_OFFSET).unwrap_or(0);
    let mut body = mvhd(time, clamp32(duration_ms));
    body.extend_from_slice(&trak(
        track,
        samples,
        time,
        duration,
        duration_ms,
        data_offset,
    ));
    boxed(b"moov", &body)
}

fn mvhd(time: u32, duration_ms: u32) -> Vec<u8> {
    let mut b = full_header(0, 0);
    b.extend_from_slice(&time.to_be_bytes()); // creation_time
    b.extend_from_slice(&time.to_be_bytes()); // modification_time
    b.extend_from_slice(&1000u32.to_be_bytes()); // timescale: milliseconds
    b.extend_from_slice(&duration_ms.to_be_bytes());
    b.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate 1.0
    b.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
    b.extend_from_slice(&[0; 10]); // reserved
    b.extend_from_slice(&unity_matrix());
    b.extend_from_slice(&[0; 24]); // pre_defined
    b.extend_from_slice(&2u32.to_be_bytes()); // next_track_ID
    boxed(b"mvhd", &b)
}

fn trak(
    track: OpusTrack,
    samples: &[OpusSample],
    time: u32,
    duration: u64,
    duration_ms: u64,
    data_offset: u32,
) -> Vec<u8> {
    let mut tkhd = full_header(0, 0x3); // enabled, in movie
    tkhd.extend_from_slice(&time.to_be_bytes());
    tkhd.extend_from_slice(&time.to_be_bytes());
    tkhd.extend_from_slice(&1u32.to_be_bytes()); // track_ID
    tkhd.extend_from_slice(&[0; 4]);
    tkhd.extend_from_slice(&clamp32(duration_ms).to_be_bytes());
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&0u16.to_be_bytes()); // layer
    tkhd.extend_from_slice(&0u16.to_be_bytes()); // alternate_group
    tkhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume: an audio track
    tkhd.extend_from_slice(&[0; 2]);
    tkhd.extend_from_slice(&unity_matrix());
    tkhd.extend_from_slice(&[0; 8]); // width, height: none for audio
    let mut body = boxed(b"tkhd", &tkhd);
    body.extend_from_slice(&mdia(track, samples, time, duration, data_offset));
    boxed(b"trak", &body)
}

fn mdia(
    track: OpusTrack,
    samples: &[OpusSample],
    time: u32,
    duration: u64,
    data_offset: u32,
) -> Vec<u8> {
    let mut mdhd = full_header(0, 0);
    mdhd.extend_from_slice(&time.to_be_bytes());
    mdhd.extend_from_slice(&time.to_be_bytes());
    mdhd.extend_from_slice(&SAMPLE_RATE.to_be_bytes());
    mdhd.extend_from_slice(&clamp32(duration).to_be_bytes());
    mdhd.extend_from_slice(&0x55c4u16.to_be_bytes()); // language "und"
    mdhd.extend_from_slice(&[0; 2]);
    let mut hdlr = full_header(0, 0);
    hdlr.extend_from_slice(&[0; 4]);
    hdlr.extend_from_slice(b"soun");
    hdlr.extend_from_slice(&[0; 12]);
    hdlr.extend_from_slice(b"SoundHandler\0");
    let mut body = boxed(b"mdhd", &mdhd);
    body.extend_from_slice(&boxed(b"hdlr", &hdlr));
    body.extend_from_slice(&minf(track, samples, data_offset));
    boxed(b"mdia", &body)
}

fn minf(track: OpusTrack, samples: &[OpusSample], data_offset: u32) -> Vec<u8> {
    let mut smhd = full_header(0, 0);
    smhd.extend_from_slice(&[0; 4]); // balance, reserved
    let mut dref = full_header(0, 0);
    dref.extend_from_slice(&1u32.to_be_bytes());
    dref.extend_from_slice(&boxed(b"url ", &full_header(0, 1))); // media in this file
    let mut body = boxed(b"smhd", &smhd);
    body.extend_from_slice(&boxed(b"dinf", &boxed(b"dref", &dref)));
    body.extend_from_slice(&stbl(track, samples, data_offset));
    boxed(b"minf", &body)
}

fn stbl(track: OpusTrack, samples: &[OpusSample], data_offset: u32) -> Vec<u8> {
    let count = clamp32(samples.len() as u64);
    let mut stsd = full_header(0, 0);
    stsd.extend_from_slice(&1u32.to_be_bytes());
    stsd.extend_from_slice(&opus_sample_entry(track));
    // Time to sample: one run per stretch of equal durations (all 20 ms but a short last one).
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for sample in samples {
        match runs.last_mut() {
            Some((n, delta)) if *delta == sample.samples => *n += 1,
            _ => runs.push((1, sample.samples)),
        }
    }
    let mut stts = full_header(0, 0);
    stts.extend_from_slice(&clamp32(runs.len() as u64).to_be_bytes());
    for (n, delta) in runs {
        stts.extend_from_slice(&n.to_be_bytes());
        stts.extend_from_slice(&delta.to_be_bytes());
    }
    // Every sample in one chunk, at `data_offset`.
    let mut stsc = full_header(0, 0);
    stsc.extend_from_slice(&1u32.to_be_bytes());
    for field in [1, count, 1] {
        stsc.extend_from_slice(&field.to_be_bytes());
    }
    let mut stsz = full_header(0, 0);
    stsz.extend_from_slice(&0u32.to_be_bytes()); // sizes vary
    stsz.extend_from_slice(&count.to_be_bytes());
    for sample in samples {
        stsz.extend_from_slice(&clamp32(sample.packet.len() as u64).to_be_bytes());
    }
    let mut stco = full_header(0, 0);
    stco.extend_from_slice(&1u32.to_be_bytes());
    stco.extend_from_slice(&data_offset.to_be_bytes());
    let mut body = boxed(b"stsd", &stsd);
    body.extend_from_slice(&boxed(b"stts", &stts));
    body.extend_from_slice(&boxed(b"stsc", &stsc));
    body.extend_from_slice(&boxed(b"stsz", &stsz));
    body.extend_from_slice(&boxed(b"stco", &stco));
    boxed(b"stbl", &body)
}

/// The `Opus` sample entry with its `dOps` (Opus-specific) box: mono, mapping family 0.
fn opus_sample_entry(track: OpusTrack) -> Vec<u8> {
    let mut entry = Vec::new();
    entry.extend_from_slice(&[0; 6]); // reserved
    entry.extend_from_slice(&1u16.to_be_bytes()); // data_reference_index
    entry.extend_from_slice(&[0; 8]); // reserved
    entry.extend_from_slice(&1u16.to_be_bytes()); // channelcount
    entry.extend_from_slice(&16u16.to_be_bytes()); // samplesize
    entry.extend_from_slice(&[0; 4]); // pre_defined, reserved
    entry.extend_from_slice(&(SAMPLE_RATE << 16).to_be_bytes());
    let mut dops = vec![0u8, 1]; // Version, OutputChannelCount
    dops.extend_from_slice(&track.pre_skip.to_be_bytes());
    dops.extend_from_slice(&SAMPLE_RATE.to_be_bytes()); // InputSampleRate
    dops.extend_from_slice(&0i16.to_be_bytes()); // OutputGain
    dops.push(0); // ChannelMappingFamily
    entry.extend_from_slice(&boxed(b"dOps", &dops));
    boxed(b"Opus", &entry)
}

/// Why an MP4 file could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    #[error("no {0} box where an Opus track written by Carillon has one")]
    Missing(&'static str),
    #[error("a sample lies outside the file")]
    OutOfBounds,
}

/// What [`read_opus_file`] finds in a file [`opus_file`] wrote.
#[derive(Debug, Clone)]
pub struct OpusFile {
    pub pre_skip: u16,
    pub samples: Vec<OpusSample>,
}

/// Reads back the Opus packets of a file written by [`opus_file`] (one track, one chunk of
/// samples): what concatenation joins. Anything else is an error, never a panic.
pub fn read_opus_file(file: &[u8]) -> Result<OpusFile, Mp4Error> {
    let moov = child(file, b"moov").ok_or(Mp4Error::Missing("moov"))?;
    let trak = child(moov, b"trak").ok_or(Mp4Error::Missing("trak"))?;
    let mdia = child(trak, b"mdia").ok_or(Mp4Error::Missing("mdia"))?;
    let minf = child(mdia, b"minf").ok_or(Mp4Error::Missing("minf"))?;
    let stbl = child(minf, b"stbl").ok_or(Mp4Error::Missing("stbl"))?;
    let stsd = child(stbl, b"stsd").ok_or(Mp4Error::Missing("stsd"))?;
    let entry = stsd
        .get(8..)
        .and_then(|entries| child(entries, b"Opus"))
        .ok_or(Mp4Error::Missing("Opus"))?;
    let dops = entry
        .get(28..)
        .and_then(|boxes| child(boxes, b"dOps"))
        .ok_or(Mp4Error::Missing("dOps"))?;
    let pre_skip = dops
        .get(2..4)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_be_bytes)
        .ok_or(Mp4Error::Missing("dOps"))?;
    let stsz = child(stbl, b"stsz").ok_or(Mp4Error::Missing("stsz"))?;
    let stco = child(stbl, b"stco").ok_or(Mp4Error::Missing("stco"))?;
    let stts = child(stbl, b"stts").ok_or(Mp4Error::Missing("stts"))?;
    let mut at = be32(stco, 8).ok_or(Mp4Error::Missing("stco"))? as usize;
    let count = be32(stsz, 8).ok_or(Mp4Error::Missing("stsz"))? as usize;
    // Each sample has a 4-byte size in `stsz`: a count past that is a damaged file, and would
    // otherwise size the reading below.
    if count > stsz.len().saturating_sub(12) / 4 {
        return Err(Mp4Error::OutOfBounds);
    }
    let durations = sample_durations(stts, count).ok_or(Mp4Error::Missing("stts"))?;
    let mut samples = Vec::with_capacity(count.min(1 << 16));
    for (i, duration) in durations.into_iter().enumerate() {
        let size = be32(stsz, 12 + 4 * i).ok_or(Mp4Error::OutOfBounds)? as usize;
        let packet = file.get(at..at + size).ok_or(Mp4Error::OutOfBounds)?;
        samples.push(OpusSample {
            packet: packet.to_vec(),
            samples: duration,
        });
        at += size;
    }
    Ok(OpusFile { pre_skip, samples })
}

/// Each sample's duration from `stts` runs, `count` of them.
fn sample_durations(stts: &[u8], count: usize) -> Option<Vec<u32>> {
    let runs = be32(stts, 4)? as usize;
    let mut durations = Vec::with_capacity(count.min(1 << 16));
    for run in 0..runs {
        let n = be32(stts, 8 + 8 * run)?;
        let delta = be32(stts, 12 + 8 * run)?;
        for _ in 0..n {
            if durations.len() == count {
                return None;
            }
            durations.push(delta);
        }
    }
    (durations.len() == count).then_some(durations)
}

/// The body of the first box of `kind` among `boxes`.
fn child<'a>(mut boxes: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    while boxes.len() >= 8 {
        let size = be32(boxes, 0)? as usize;
        if size < 8 {
            return None;
        }
        let body = boxes.get(8..size)?;
        if boxes.get(4..8)? == kind {
            return Some(body);
        }
        boxes = boxes.get(size..)?;
    }
    None
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Version and flags of a full box.
fn full_header(version: u8, flags: u32) -> Vec<u8> {
    let mut header = (flags & 0x00ff_ffff).to_be_bytes().to_vec();
    if let Some(first) = header.first_mut() {
        *first = version;
    }
    header
}

fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&clamp32(body.len() as u64 + 8).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn unity_matrix() -> [u8; 36] {
    let mut matrix = [0u8; 36];
    for (at, value) in [(0, 0x0001_0000u32), (16, 0x0001_0000), (32, 0x4000_0000)] {
        if let Some(slot) = matrix.get_mut(at..at + 4) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
    }
    matrix
}

fn clamp32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boxes at one level of a file, as (kind, body).
    fn boxes(mut data: &[u8]) -> Vec<(String, &[u8])> {
        let mut out = Vec::new();
        while data.len() >= 8 {
            let size = u32::from_be_bytes(data[..4].try_into().expect("4 bytes")) as usize;
            out.push((
                String::from_utf8_lossy(&data[4..8]).into_owned(),
                &data[8..size],
            ));
            data = &data[size..];
        }
        out
    }

    fn child<'a>(parent: &'a [u8], kind: &str) -> &'a [u8] {
        boxes(parent)
            .into_iter()
            .find(|(k, _)| k == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .1
    }

    #[test]
    fn the_index_points_at_every_packet_and_gives_the_duration() {
        let samples: Vec<OpusSample> = (0..250u32)
            .map(|i| OpusSample {
                packet: vec![(i % 251) as u8; 3 + (i as usize % 7)],
                samples: 960,
            })
            .collect();
        let file = opus_file(
            OpusTrack {
                pre_skip: 312,
                created_unix_secs: 1_800_000_000,
            },
            &samples,
        );
        let top: Vec<String> = boxes(&file).into_iter().map(|(k, _)| k).collect();
        assert_eq!(top, ["ftyp", "moov", "mdat"]);
        let moov = child(&file, "moov");
        let mdhd = child(child(child(moov, "trak"), "mdia"), "mdhd");
        assert_eq!(
            u32::from_be_bytes(mdhd[12..16].try_into().expect("4 bytes")),
            48_000
        );
        assert_eq!(
            u32::from_be_bytes(mdhd[16..20].try_into().expect("4 bytes")),
            250 * 960,
            "5 s of 20 ms packets"
        );
        let stbl = child(child(child(child(moov, "trak"), "mdia"), "minf"), "stbl");
        let stco = child(stbl, "stco");
        let offset = u32::from_be_bytes(stco[8..12].try_into().expect("4 bytes")) as usize;
        let stsz = child(stbl, "stsz");
        let mut at = offset;
        for (i, sample) in samples.iter().enumerate() {
            let size =
                u32::from_be_bytes(stsz[12 + 4 * i..16 + 4 * i].try_into().expect("4 bytes"));
            assert_eq!(size as usize, sample.packet.len());
            assert_eq!(&file[at..at + sample.packet.len()], &sample.packet[..]);
            at += sample.packet.len();
        }
        assert_eq!(at, file.len(), "mdat ends the file");
        let stsd = child(stbl, "stsd");
        let entry = child(&stsd[8..], "Opus");
        let dops = child(&entry[28..], "dOps");
        assert_eq!(
            u16::from_be_bytes(dops[2..4].try_into().expect("2 bytes")),
            312
        );
        let read = read_opus_file(&file).expect("reads back");
        assert_eq!(read.pre_skip, 312);
        assert_eq!(read.samples.len(), samples.len());
        assert!(
            read.samples
                .iter()
                .zip(&samples)
                .all(|(a, b)| a.packet == b.packet && a.samples == b.samples)
        );
        for cut in [0, 7, 100, file.len() / 2, file.len() - 1] {
            assert!(read_opus_file(&file[..cut]).is_err(), "truncated at {cut}");
        }
        // A sample count far past the table: an error, not 4 billion samples.
        let at = file.windows(4).position(|w| w == b"stsz").expect("stsz") + 12;
        let mut damaged = file.clone();
        damaged[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_opus_file(&damaged),
            Err(Mp4Error::OutOfBounds)
        ));
    }
}
