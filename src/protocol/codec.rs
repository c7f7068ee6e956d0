//! Small pieces every API's encoding and decoding shares.

use flatbuffers::{FlatBufferBuilder, Follow, ForwardsUOffset, Vector, WIPOffset};

use super::{fb, Payload, ProtocolError, Records, Topic};

/// A vector of tables as the generated code reads and writes it.
pub(crate) type Tables<'a, T> = Vector<'a, ForwardsUOffset<T>>;

/// Writes topics of partitions: `partition` writes one partition's table,
/// `topic` a topic's from its name and its partitions' vector.
pub(crate) fn topics_out<'a, P, PT: 'a, TT: 'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    topics: &[Topic<P>],
    mut partition: impl FnMut(&mut FlatBufferBuilder<'a>, &P) -> WIPOffset<PT>,
    mut topic: impl FnMut(&mut FlatBufferBuilder<'a>, WIPOffset<&'a str>, WIPOffset<Tables<'a, PT>>) -> WIPOffset<TT>,
) -> WIPOffset<Tables<'a, TT>> {
    let ts: Vec<_> = topics
        .iter()
        .map(|t| {
            let ps: Vec<_> = t.partitions.iter().map(|p| partition(fbb, p)).collect();
            let ps = fbb.create_vector(&ps);
            let name = fbb.create_string(&t.name);
            topic(fbb, name, ps)
        })
        .collect();
    fbb.create_vector(&ts)
}

/// Reads topics of partitions: `topic` gives a topic table's name and
/// partitions, `partition` reads one partition (in message order, so a
/// reader of records may take them from the payload as it goes).
pub(crate) fn topics_in<'a, T, Q, P>(
    topics: Option<Tables<'a, T>>,
    topic: impl Fn(&T) -> (Option<&'a str>, Option<Tables<'a, Q>>),
    mut partition: impl FnMut(Q) -> P,
) -> Vec<Topic<P>>
where
    T: Follow<'a, Inner = T> + 'a,
    Q: Follow<'a, Inner = Q> + 'a,
{
    topics
        .iter()
        .flatten()
        .map(|t| {
            let (name, ps) = topic(&t);
            Topic { name: string(name), partitions: ps.iter().flatten().map(&mut partition).collect() }
        })
        .collect()
}

/// A vector of strings as the generated code reads it.
pub(crate) type Strings<'a> = Vector<'a, ForwardsUOffset<&'a str>>;

/// An optional string field as an owned string ("" when absent).
pub(crate) fn string(s: Option<&str>) -> String {
    s.unwrap_or_default().to_string()
}

pub(crate) fn strings_in(v: Option<Strings<'_>>) -> Vec<String> {
    v.iter().flatten().map(str::to_string).collect()
}

pub(crate) fn strings_out<'a>(fbb: &mut FlatBufferBuilder<'a>, v: &[String]) -> WIPOffset<Strings<'a>> {
    let v: Vec<_> = v.iter().map(|s| fbb.create_string(s)).collect();
    fbb.create_vector(&v)
}

pub(crate) fn opt_str<'a>(fbb: &mut FlatBufferBuilder<'a>, s: Option<&str>) -> Option<WIPOffset<&'a str>> {
    s.map(|s| fbb.create_string(s))
}

pub(crate) fn configs_in(v: Option<Vector<'_, ForwardsUOffset<fb::ConfigEntry<'_>>>>) -> Vec<(String, String)> {
    v.iter().flatten().map(|c| (c.key().to_string(), c.value().to_string())).collect()
}

pub(crate) fn configs_out<'a>(fbb: &mut FlatBufferBuilder<'a>, v: &[(String, String)]) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::ConfigEntry<'a>>>> {
    let cs: Vec<_> = v
        .iter()
        .map(|(k, v)| {
            let (k, v) = (fbb.create_string(k), fbb.create_string(v));
            fb::ConfigEntry::create(fbb, &fb::ConfigEntryArgs { key: Some(k), value: Some(v) })
        })
        .collect();
    fbb.create_vector(&cs)
}

/// Slices the payload into the partitions' records in message order,
/// after checking the message describes exactly the payload's bytes.
pub(crate) fn split_payload<P: Payload>(mut payload: P, sizes: impl Iterator<Item = u32> + Clone) -> Result<impl Iterator<Item = P>, ProtocolError> {
    let want: u64 = sizes.clone().map(u64::from).sum();
    if want != payload.records_len() as u64 {
        return Err(ProtocolError::PayloadMismatch { want, have: payload.records_len() });
    }
    Ok(sizes.map(move |n| payload.split_to(n as usize)))
}

/// The `records_bytes` of one partition's records.
pub(crate) fn records_bytes<R: Records>(r: &R) -> u32 {
    r.records_len() as u32
}
