//! Free-text words: one word of a request's `query` as a tantivy query.
//!
//! A record contains a word when one of its string values does (values are split into
//! lower-cased alphanumeric runs, [`crate::query::tokens`]). The words of most keyword values
//! are not indexed a second time in `_all`: the value is already in its keyword column, and
//! every distinct value is in that column's dictionary once per segment. So a word is looked
//! up in two places, per segment:
//!
//! * the `_all` postings, which hold the words of every string value that is not in a
//!   word-searched keyword column ([`crate::schema::FieldSpec::words_in_column`]): values of
//!   other fields, of nearly unique keyword fields (pod names, URLs) and number-like strings;
//! * the dictionary of each word-searched keyword column: the ordinals of the terms that
//!   contain the word are collected, and a document matches when one of its values in that
//!   column has such an ordinal.
//!
//! IP address fields work the same way without a dictionary: an address whose text is
//! exactly how the column prints it back ([`write_ip`]) keeps its words out of `_all`, and a
//! word that could be part of such a text (up to four hex digits) is checked against the
//! documents' addresses, printed.
//!
//! A document matches if either says so, which is exact for indices written before this
//! scheme too (their `_all` holds every word, and a column only ever confirms a word the
//! record has). Terms that could have come from a JSON number or boolean are skipped in the
//! dictionaries ([`scalar_like`]): keyword columns hold those as text, but free text never
//! searched numbers; string values that look like that stay in `_all` instead.
//!
//! The dictionary scan costs a pass over each word-searched column's distinct values per
//! segment and query, which is why nearly unique fields keep their words in `_all`. The
//! per-document check runs only on documents the other clauses leave (it is a predicate, never
//! the leader of the intersection).

use std::net::Ipv6Addr;
use std::sync::Arc;

use tantivy::columnar::{Column, StrColumn};
use tantivy::postings::SegmentPostings;
use tantivy::query::AllScorer;
use tantivy::query::doc_predicate_query::{
    ConstOrVariableSegmentPredicate, DocPredicate, SegmentDocPredicate,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, SegmentReader, Term};

/// Tokens at least this long (in bytes) are dropped, as tantivy's default tokenizer does.
const MAX_TOKEN_BYTES: usize = 40;

/// One free-text word (already lower-cased by the analyzer) of a search.
#[derive(Debug)]
pub(crate) struct WordQuery {
    /// The word.
    pub word: String,
    /// The `_all` field.
    pub all: Field,
    /// Tantivy names of the keyword columns whose words are searched in their dictionaries.
    pub columns: Arc<[String]>,
    /// Tantivy names of the IP address columns (their words are searched too).
    pub ip_columns: Arc<[String]>,
}

/// A word in one segment: its `_all` postings, the matching ordinals of each keyword column,
/// and the IP columns to print and check (only if the word could be part of an address).
pub(crate) struct SegmentWord {
    postings: Option<SegmentPostings>,
    columns: Vec<(StrColumn, Vec<u64>)>,
    ips: Vec<Column<Ipv6Addr>>,
    word: String,
    buf: String,
}

impl DocPredicate for WordQuery {
    type SegmentDocPredicate = SegmentWord;

    fn doc_predicate(
        &self,
        segment: &SegmentReader,
    ) -> tantivy::Result<ConstOrVariableSegmentPredicate<SegmentWord>> {
        let term = Term::from_field_text(self.all, &self.word);
        let postings = segment
            .inverted_index(self.all)?
            .read_postings(&term, IndexRecordOption::Basic)?;
        let mut columns = Vec::new();
        let fast = segment.fast_fields();
        for name in self.columns.iter() {
            let Some(column) = fast.str(name)? else {
                continue;
            };
            if let Some(ords) = matching_ords(&column, &self.word)? {
                columns.push((column, ords));
            }
        }
        let mut ips = Vec::new();
        if may_be_in_an_address(&self.word) {
            for name in self.ip_columns.iter() {
                if let Some(column) = fast.column_opt::<Ipv6Addr>(name)? {
                    ips.push(column);
                }
            }
        }
        let word = self.word.clone();
        let buf = String::new();
        Ok(match (postings, columns.is_empty() && ips.is_empty()) {
            (None, true) => ConstOrVariableSegmentPredicate::Const(false),
            // Only `_all` has the word here: its postings are the answer.
            (Some(postings), true) => ConstOrVariableSegmentPredicate::Variable {
                predicate: SegmentWord {
                    postings: None,
                    columns,
                    ips,
                    word,
                    buf,
                },
                necessary_condition: Box::new(postings),
            },
            (postings, false) => ConstOrVariableSegmentPredicate::Variable {
                predicate: SegmentWord {
                    postings,
                    columns,
                    ips,
                    word,
                    buf,
                },
                necessary_condition: Box::new(AllScorer::new(segment.max_doc())),
            },
        })
    }
}

impl SegmentDocPredicate for SegmentWord {
    /// Called with increasing document ids.
    fn eval(&mut self, doc: DocId) -> bool {
        if let Some(p) = &mut self.postings {
            if p.doc() < doc {
                p.seek(doc);
            }
            if p.doc() == doc {
                return true;
            }
        }
        if self.columns.is_empty() && self.ips.is_empty() && self.postings.is_none() {
            return true;
        }
        let in_keywords = self.columns.iter().any(|(column, bits)| {
            column
                .term_ords(doc)
                .any(|ord| bits[(ord / 64) as usize] & (1 << (ord % 64)) != 0)
        });
        in_keywords
            || self.ips.iter().any(|column| {
                column.values_for_doc(doc).any(|ip| {
                    self.buf.clear();
                    write_ip(ip, &mut self.buf);
                    has_word(&self.buf, &self.word)
                })
            })
    }

    fn cost(&self) -> u64 {
        // A few column lookups per document: far dearer than advancing a posting list.
        100
    }
}

/// How an IP column prints an address back: IPv4 (kept IPv4-mapped) dotted, IPv6 as Rust
/// prints it (RFC 5952: lower case, longest zero run compressed).
pub(crate) fn write_ip(ip: Ipv6Addr, out: &mut String) {
    use std::fmt::Write as _;
    let _ = match ip.to_ipv4_mapped() {
        Some(v4) => write!(out, "{v4}"),
        None => write!(out, "{ip}"),
    };
}

/// Whether `word` could be a token of a printed address: decimal octets and hex groups are
/// one to four hex digits (lower case, as words are).
fn may_be_in_an_address(word: &str) -> bool {
    (1..=4).contains(&word.len())
        && word
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A bit set of the ordinals of `column`'s terms that contain `word`; `None` if there are none.
fn matching_ords(column: &StrColumn, word: &str) -> std::io::Result<Option<Vec<u64>>> {
    let mut bits = vec![0u64; column.num_terms().div_ceil(64)];
    let mut any = false;
    let mut stream = column.dictionary().stream()?;
    while stream.advance() {
        let Ok(term) = std::str::from_utf8(stream.key()) else {
            continue;
        };
        if !scalar_like(term) && has_word(term, word) {
            let ord = stream.term_ord();
            if let Some(b) = bits.get_mut((ord / 64) as usize) {
                *b |= 1 << (ord % 64);
                any = true;
            }
        }
    }
    Ok(any.then_some(bits))
}

/// Whether `text` contains `word` as one of its tokens (as the `_all` field would index
/// them: alphanumeric runs shorter than 40 bytes, lower-cased).
pub(crate) fn has_word(text: &str, word: &str) -> bool {
    if text.is_ascii() {
        // The analyzer's own result for ASCII, without allocating: ASCII alphanumerics are
        // exactly the ASCII characters `char::is_alphanumeric` accepts, and lower-casing
        // ASCII keeps the length.
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|t| !t.is_empty() && t.len() < MAX_TOKEN_BYTES && t.eq_ignore_ascii_case(word))
    } else {
        crate::query::tokens(text).iter().any(|t| t == word)
    }
}

/// Whether a keyword term could be the text of a JSON number or boolean
/// ([`crate::schema::keyword_value`] stores those as text). Free text does not search numbers,
/// so such terms are skipped in the dictionaries, and string values that look like this keep
/// their words in `_all`. Covers every number `serde_json` prints (integers, `1.5`, `1e300`).
pub(crate) fn scalar_like(s: &str) -> bool {
    s == "true"
        || s == "false"
        || (s.starts_with(|c: char| c.is_ascii_digit() || c == '-') && s.parse::<f64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_word_agrees_with_the_analyzer() {
        for text in [
            "frontend-7c9d-x2b4q",
            "app=Frontend",
            "0|default|cache/default.allow-frontend|allow|0",
            "straße-worker",
            "İstanbul",
            "Münch\u{e9}n x",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-tail",
            "",
            "--",
        ] {
            let tokens = crate::query::tokens(text);
            for w in tokens
                .iter()
                .map(String::as_str)
                .chain(["frontend", "x", "tail", "a"])
            {
                assert_eq!(
                    has_word(text, w),
                    tokens.iter().any(|t| t == w),
                    "{text:?} {w:?}"
                );
            }
        }
    }

    #[test]
    fn scalar_like_covers_what_json_scalars_print() {
        for v in [
            serde_json::json!(80),
            serde_json::json!(-3),
            serde_json::json!(1.5),
            serde_json::json!(1e300),
            serde_json::json!(u64::MAX),
            serde_json::json!(true),
            serde_json::json!(false),
        ] {
            let text = crate::schema::keyword_value(&v).unwrap();
            assert!(scalar_like(&text), "{text}");
        }
        for s in [
            "shop", "inf", "NaN", "1.5.3", "10.0.0.1", "-", "node-1", "e5",
        ] {
            assert!(!scalar_like(s), "{s}");
        }
    }
}
