//! Deterministic, Zipf-distributed text: the input of the WordCount benchmark.
//!
//! A seeded [`SplitMix64`] makes a vocabulary of distinct pseudo-words (frequent ranks get
//! short words, as in natural language), then writes lines of about ten words, each drawn
//! from the vocabulary with probability proportional to `1 / rank^exponent` (inverse CDF over
//! precomputed cumulative weights, by binary search). The same options always give the same
//! bytes, on every platform.
//!
//! ```
//! use eddy_examples::zipf::{write_zipf_text, ZipfOptions};
//!
//! let mut text = Vec::new();
//! let stats = write_zipf_text(&mut text, 4096, &ZipfOptions::default()).unwrap();
//! assert!(stats.bytes >= 4096 && stats.bytes == text.len() as u64);
//! ```

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub use eddy::random::SplitMix64;

/// What text to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipfOptions {
    /// Number of distinct words to draw from.
    pub vocabulary: usize,
    /// Zipf exponent `s`: word of rank `k` has weight `1 / k^s` (0 = uniform).
    pub exponent: f64,
    pub seed: u64,
    /// Mean words per line; lines hold between `mean - 4` and `mean + 4` words (at least 1).
    pub words_per_line: usize,
}

impl Default for ZipfOptions {
    fn default() -> Self {
        ZipfOptions { vocabulary: 100_000, exponent: 1.0, seed: 42, words_per_line: 10 }
    }
}

impl ZipfOptions {
    pub fn validate(&self) -> io::Result<()> {
        let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
        if self.vocabulary == 0 {
            return bad("the vocabulary must hold at least one word".into());
        }
        if !(self.exponent.is_finite() && self.exponent >= 0.0) {
            return bad(format!("the Zipf exponent must be finite and >= 0, not {}", self.exponent));
        }
        if self.words_per_line == 0 {
            return bad("lines must hold at least one word".into());
        }
        Ok(())
    }
}

/// `n` distinct lowercase pseudo-words; the word of rank `k` (0-based) has about
/// `1 + log2(k + 1) / 2` to `3 + log2(k + 1) / 2` letters.
pub fn vocabulary(n: usize, rng: &mut SplitMix64) -> Vec<String> {
    let mut seen = HashSet::with_capacity(n);
    let mut words = Vec::with_capacity(n);
    for rank in 0..n {
        let base = 1 + ((rank as f64 + 1.0).log2() / 2.0) as u64;
        let mut extra = 0;
        loop {
            // Short lengths run out of distinct words: lengthen after repeated collisions.
            let len = base + rng.below(3) + extra / 8;
            let word: String = (0..len).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
            if seen.insert(word.clone()) {
                words.push(word);
                break;
            }
            extra += 1;
        }
    }
    words
}

/// Draws ranks `0..n` with probability proportional to `1 / (rank + 1)^exponent`.
#[derive(Debug, Clone)]
pub struct ZipfSampler {
    /// `cumulative[k]` = sum of the weights of ranks `0..=k`.
    cumulative: Vec<f64>,
}

impl ZipfSampler {
    pub fn new(n: usize, exponent: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += (k as f64).powf(-exponent);
                total
            })
            .collect();
        ZipfSampler { cumulative }
    }

    /// A rank, by inverse CDF: the first rank whose cumulative weight exceeds `u * total`.
    #[inline]
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let total = *self.cumulative.last().expect("a non-empty vocabulary");
        let target = rng.next_f64() * total;
        self.cumulative.partition_point(|&c| c <= target).min(self.cumulative.len() - 1)
    }
}

/// What [`write_zipf_text`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextStats {
    pub bytes: u64,
    pub lines: u64,
    pub words: u64,
    /// Distinct words that occur.
    pub distinct: u64,
}

/// Writes lines of Zipf-distributed words, separated by single spaces, until at least
/// `target_bytes` bytes are written (the last line is complete).
pub fn write_zipf_text<W: Write>(
    mut out: W,
    target_bytes: u64,
    options: &ZipfOptions,
) -> io::Result<TextStats> {
    options.validate()?;
    let mut rng = SplitMix64::new(options.seed);
    let words = vocabulary(options.vocabulary, &mut rng);
    let sampler = ZipfSampler::new(words.len(), options.exponent);
    let mut used = vec![false; words.len()];
    let mut stats = TextStats::default();
    let spread = (options.words_per_line - 1).min(4) as u64;
    let mut line = Vec::with_capacity(256);
    while stats.bytes < target_bytes {
        line.clear();
        let n = options.words_per_line as u64 - spread + rng.below(2 * spread + 1);
        for i in 0..n {
            if i > 0 {
                line.push(b' ');
            }
            let rank = sampler.sample(&mut rng);
            if !used[rank] {
                used[rank] = true;
                stats.distinct += 1;
            }
            line.extend_from_slice(words[rank].as_bytes());
            stats.words += 1;
        }
        line.push(b'\n');
        out.write_all(&line)?;
        stats.bytes += line.len() as u64;
        stats.lines += 1;
    }
    out.flush()?;
    Ok(stats)
}

/// Writes the text to `path` (through a temporary file in the same directory, renamed at the
/// end, so a crash never leaves a partial file under `path`).
pub fn write_zipf_file(path: &Path, target_bytes: u64, options: &ZipfOptions) -> io::Result<TextStats> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let result = File::create(&tmp)
        .and_then(|f| write_zipf_text(BufWriter::with_capacity(1 << 20, f), target_bytes, options));
    match result {
        Ok(stats) => {
            fs::rename(&tmp, path)?;
            Ok(stats)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_options_give_the_same_text() {
        let gen = |seed| {
            let mut v = Vec::new();
            write_zipf_text(&mut v, 10_000, &ZipfOptions { seed, ..ZipfOptions::default() }).unwrap();
            v
        };
        assert_eq!(gen(7), gen(7));
        assert_ne!(gen(7), gen(8));
    }

    #[test]
    fn stats_describe_the_text() {
        let mut v = Vec::new();
        let opts = ZipfOptions { vocabulary: 1000, ..ZipfOptions::default() };
        let stats = write_zipf_text(&mut v, 50_000, &opts).unwrap();
        let text = String::from_utf8(v).unwrap();
        assert_eq!(stats.bytes, text.len() as u64);
        assert!(stats.bytes >= 50_000);
        assert_eq!(stats.lines, text.lines().count() as u64);
        assert_eq!(stats.words, text.split_whitespace().count() as u64);
        let distinct: HashSet<&str> = text.split_whitespace().collect();
        assert_eq!(stats.distinct, distinct.len() as u64);
        assert!(text.lines().all(|l| (6..=14).contains(&l.split(' ').count())));
    }

    #[test]
    fn vocabulary_words_are_distinct() {
        let words = vocabulary(20_000, &mut SplitMix64::new(1));
        let set: HashSet<&String> = words.iter().collect();
        assert_eq!(set.len(), words.len());
        assert!(words[0].len() <= 3);
    }

    #[test]
    fn low_ranks_are_drawn_most_often() {
        let s = ZipfSampler::new(100, 1.0);
        let mut rng = SplitMix64::new(3);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[s.sample(&mut rng)] += 1;
        }
        // Rank 0 has weight 1/H(100) ≈ 19%, rank 1 half of that.
        assert!(counts[0] > 17_000 && counts[0] < 21_000, "{}", counts[0]);
        assert!(counts[1] > 8_000 && counts[1] < 11_000, "{}", counts[1]);
        assert!(counts[99] > 0);
    }
}
