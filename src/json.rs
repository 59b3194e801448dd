//! Compact JSON text for the service's hot paths: the Slack request bodies, the stored job
//! payloads and the tokens kept with a sent message. The bytes are `serde_json::to_vec`'s, to
//! the byte; what differs is the string escape, which looks at eight bytes at a time for the
//! few that need escaping (`"`, `\` and the controls below U+0020) instead of one byte at a
//! time. That loop was about a sixteenth of a delivered run's instructions.
//!
//! Floats are written by `serde_json` itself, one number at a time. A value this writer does
//! not take (a map key that is not a string, a `RawValue`) is written whole by `serde_json`, so
//! every value still comes out exactly as `serde_json` writes it.

use serde::ser::{self, Impossible, Serialize};

/// Why a value was handed back to `serde_json` (never shown: the fallback writes it).
type Error = serde_json::Error;

/// Appends the compact JSON of `value` to `out`, byte for byte what `serde_json::to_writer`
/// writes.
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), serde_json::Error> {
    let start = out.len();
    if value.serialize(&mut Writer { out }).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    serde_json::to_writer(out, value)
}

/// The compact JSON of `value` (see [`write`]).
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value)?;
    Ok(out)
}

/// The compact JSON text of `value` (see [`write`]).
pub(crate) fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    to_vec(value).map(|bytes| String::from_utf8(bytes).expect("JSON written from Rust strings is UTF-8"))
}

/// What a byte becomes in a JSON string: 0 for itself, else the letter after its backslash
/// (`u` for `\u00XX`). The same table as `serde_json`'s.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the eight bytes of `word` is below 0x20, a `"` or a `\`. Each test is the
/// classic "has a byte less than n" on the word (exact as a yes or no; a byte at or above 0x80
/// never sets its own high bit in `!word`).
#[inline]
fn needs_escape(word: u64) -> bool {
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let q = word ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let b = word ^ (ONES * b'\\' as u64);
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGHS != 0
}

/// Appends `text` as a JSON string, quotes included.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    if bytes.len() < 16 {
        for (j, &byte) in bytes.iter().enumerate() {
            let escape = ESCAPE[byte as usize];
            if escape != 0 {
                out.extend_from_slice(&bytes[start..j]);
                start = j + 1;
                write_escape(out, byte, escape);
            }
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
        return;
    }
    loop {
        // Eight bytes at a time while none of them needs escaping,
        while let Some(chunk) = bytes.get(i..i + 8) {
            if needs_escape(u64::from_le_bytes(chunk.try_into().expect("eight bytes"))) {
                break;
            }
            i += 8;
        }
        // then byte by byte through the eight that hold one (or the last few).
        let end = bytes.len().min(i + 8);
        if i == end {
            break;
        }
        while i < end {
            let byte = bytes[i];
            let escape = ESCAPE[byte as usize];
            i += 1;
            if escape == 0 {
                continue;
            }
            out.extend_from_slice(&bytes[start..i - 1]);
            start = i;
            write_escape(out, byte, escape);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends the escape of `byte` (its [`ESCAPE`] entry `escape`, not 0).
#[inline]
fn write_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    if escape == b'u' {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(byte >> 4) as usize],
            HEX[(byte & 0xf) as usize],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

/// The serializer: writes into `out`.
struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

/// Gives the value back to `serde_json` (see [`write`]).
fn handed_back() -> Error {
    ser::Error::custom("written by serde_json")
}

impl<'o> Writer<'o> {
    fn int(&mut self, n: impl itoa::Integer) {
        self.out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    /// Opens an array or object (`open`), inside `{"variant":` for an enum's variant, to be
    /// closed by `close`.
    fn compound(&mut self, variant: Option<&str>, open: u8, close: &'static [u8]) -> Compound<'_, 'o> {
        if let Some(variant) = variant {
            self.out.push(b'{');
            write_str(self.out, variant);
            self.out.push(b':');
        }
        self.out.push(open);
        Compound {
            w: self,
            first: true,
            close,
        }
    }
}

/// An array or object being written: whether a comma comes before the next element, and what
/// closes it.
struct Compound<'a, 'o> {
    w: &'a mut Writer<'o>,
    first: bool,
    close: &'static [u8],
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.w.out.push(b',');
        }
    }

    fn end(self) {
        self.w.out.extend_from_slice(self.close);
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        write_str(self.w.out, key);
        self.w.out.push(b':');
        value.serialize(&mut *self.w)
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.w)
    }
}

/// The [`Writer`]'s methods for integers, written in decimal (`itoa`, as `serde_json` does).
macro_rules! integers {
    ($($method:ident($ty:ty)),+) => {$(
        fn $method(self, v: $ty) -> Result<(), Error> {
            self.int(v);
            Ok(())
        }
    )+};
}

impl<'a, 'o> ser::Serializer for &'a mut Writer<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'o>;
    type SerializeTuple = Compound<'a, 'o>;
    type SerializeTupleStruct = Compound<'a, 'o>;
    type SerializeTupleVariant = Compound<'a, 'o>;
    type SerializeMap = Compound<'a, 'o>;
    type SerializeStruct = Compound<'a, 'o>;
    type SerializeStructVariant = Compound<'a, 'o>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128)
    );
    // A float is written by `serde_json`, whose shortest form (and `null` for NaN and the
    // infinities) it is.
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, &v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, &v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, &v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, 'o>, Error> {
        Ok(self.compound(None, b'[', b"]"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'o>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a, 'o>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'o>, Error> {
        Ok(self.compound(Some(variant), b'[', b"]}"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a, 'o>, Error> {
        Ok(self.compound(None, b'{', b"}"))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Compound<'a, 'o>, Error> {
        // `serde_json::value::RawValue` is a struct of this name whose text is written as it is.
        if name.starts_with("$serde_json::") {
            return Err(handed_back());
        }
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'o>, Error> {
        Ok(self.compound(Some(variant), b'{', b"}}"))
    }
}

/// The `end` every kind of compound shares.
macro_rules! compound_end {
    () => {
        fn end(self) -> Result<(), Error> {
            Compound::end(self);
            Ok(())
        }
    };
}

/// The compounds whose elements have no key: arrays (and a tuple variant's array).
macro_rules! keyless_compound {
    ($($trait:ident :: $method:ident),+) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            compound_end!();
        }
    )+};
}

keyless_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(KeyWriter(&mut *self.w.out))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.w.out.push(b':');
        value.serialize(&mut *self.w)
    }
    compound_end!();
}

/// The compounds whose fields are named: a struct's object (and a struct variant's).
macro_rules! named_compound {
    ($($trait:ident),+) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
                self.field(key, value)
            }
            compound_end!();
        }
    )+};
}

named_compound!(SerializeStruct, SerializeStructVariant);

/// Methods of [`KeyWriter`] for keys that are `serde_json`'s to write.
macro_rules! key_handed_back {
    ($($method:ident($ty:ty)),+) => {$(
        fn $method(self, _v: $ty) -> Result<(), Error> {
            Err(handed_back())
        }
    )+};
}

/// A map's key: a string (or what reads as one); any other key is `serde_json`'s to write.
struct KeyWriter<'o>(&'o mut Vec<u8>);

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.0, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    key_handed_back!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str)
    );
    fn serialize_none(self) -> Result<(), Error> {
        Err(handed_back())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(handed_back())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(handed_back())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(handed_back())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(handed_back())
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeTupleStruct, Error> {
        Err(handed_back())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(handed_back())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(handed_back())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, Error> {
        Err(handed_back())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(handed_back())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    fn same<T: Serialize + ?Sized>(value: &T) {
        assert_eq!(
            String::from_utf8(to_vec(value).unwrap()).unwrap(),
            serde_json::to_string(value).unwrap()
        );
    }

    /// Like [`same`], and written by this writer itself, not handed back to `serde_json`.
    fn written_here<T: Serialize + ?Sized>(value: &T) {
        let mut out = Vec::new();
        assert!(value.serialize(&mut Writer { out: &mut out }).is_ok(), "handed back");
        assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(value).unwrap());
    }

    /// Like [`same`], for a value `serde_json` writes whole (after a partial write here).
    fn handed_back_whole<T: Serialize + ?Sized>(value: &T) {
        let mut out = Vec::new();
        assert!(value.serialize(&mut Writer { out: &mut out }).is_err(), "written here");
        let mut prefixed = b"x".to_vec();
        write(&mut prefixed, value).unwrap();
        assert_eq!(
            prefixed[1..],
            serde_json::to_vec(value).unwrap()[..],
            "the partial write is undone"
        );
        same(value);
    }

    #[test]
    fn every_byte_is_escaped_as_serde_json_escapes_it() {
        for b in 0u8..=0x7f {
            let c = b as char;
            for text in [
                c.to_string(),
                format!("abcdefg{c}"),
                format!("{c}abcdefghijklmnop"),
                format!("0123456{c}{c}89abcdefghij"),
            ] {
                same(&text);
            }
        }
        same("é—€🙂\u{2028}\u{7f}\u{80}\u{ff}");
        same("");
    }

    #[derive(serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        First,
        Second,
    }

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i32, String),
        Struct { a: Option<bool>, b: Vec<u64> },
    }

    #[derive(serde::Serialize)]
    struct Everything {
        flag: bool,
        small: i8,
        big: u128,
        negative: i128,
        float: f64,
        nan: f32,
        text: &'static str,
        letter: char,
        none: Option<String>,
        unit: (),
        tuple: (u16, &'static str),
        shapes: Vec<Shape>,
        by_name: BTreeMap<String, Value>,
        by_unit: BTreeMap<Key, u8>,
        bytes: serde_bytes_like::Bytes,
    }

    mod serde_bytes_like {
        /// Bytes written through `serialize_bytes`.
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn every_shape_of_value_is_written_as_serde_json_writes_it() {
        written_here(&Everything {
            flag: true,
            small: -8,
            big: u128::MAX,
            negative: i128::MIN,
            float: 0.1 + 0.2,
            nan: f32::NAN,
            text: "a \"quoted\"\n\\line",
            letter: '"',
            none: None,
            unit: (),
            tuple: (7, "x"),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(3),
                Shape::Tuple(-1, "t".into()),
                Shape::Struct {
                    a: Some(false),
                    b: vec![],
                },
            ],
            by_name: BTreeMap::from([
                ("k\u{1}".to_string(), json!({"n": [1, 2.5, -3, null, true, "s"]})),
                ("e".to_string(), json!({})),
            ]),
            by_unit: BTreeMap::from([(Key::First, 1), (Key::Second, 2)]),
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
        });
        written_here(&(Some(1.5f32), 'é', [None::<u8>, Some(2)], Key::Second));
        // A key that is not a string and a RawValue are written whole by serde_json.
        handed_back_whole(&BTreeMap::from([(1u32, true), (20, false)]));
        let raw = serde_json::value::RawValue::from_string("{ \"spaced\" : 1 }".into()).unwrap();
        handed_back_whole(&vec![raw]);
    }

    /// Arbitrary JSON values: strings of any characters, nested arrays and objects, numbers.
    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".*".prop_map(Value::String),
            "[\\x00-\\x7f]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_values_are_written_as_serde_json_writes_them(value in values()) {
            prop_assert_eq!(to_vec(&value).unwrap(), serde_json::to_vec(&value).unwrap());
        }

        #[test]
        fn arbitrary_text_is_escaped_as_serde_json_escapes_it(text in ".*", ascii in "[\\x00-\\x7f]*") {
            for t in [&text, &ascii] {
                let mut out = Vec::new();
                write_str(&mut out, t);
                prop_assert_eq!(out, serde_json::to_vec(t).unwrap());
            }
        }
    }
}
