//! WordCount, the pipeline of `eddy-examples` (flat_map split_whitespace → key_by word → sum),
//! over generated text files, checked against a plain `HashMap` count of the same text.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use eddy::prelude::*;

/// `eddy_examples::word_count`, re-implemented here: `(word, count)` per word.
fn word_count(lines: &DataStream<String>) -> DataStream<(String, i64)> {
    lines
        .flat_map(|line: String, out: &mut Collector<(String, i64)>| {
            for word in line.split_whitespace() {
                out.collect((word.to_string(), 1));
            }
        })
        .name("Tokenizer")
        .key_by(|t: &(String, i64)| t.0.clone())
        .sum(|t: &mut (String, i64)| &mut t.1)
        .name("Counter")
}

/// A 64-bit linear congruential generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `lines` lines of words from a vocabulary of 500, skewed so that a few words are frequent
/// and many are rare; separators vary (spaces, tabs, runs of them) and some lines are empty.
fn generate_text(seed: u64, lines: usize) -> String {
    let mut rng = Lcg(seed);
    let vocabulary: Vec<String> = (0..500)
        .map(|i| {
            let len = 2 + rng.below(7);
            let letters: String = (0..len).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
            format!("{letters}{i}")
        })
        .collect();
    let mut text = String::new();
    for _ in 0..lines {
        let words = rng.below(12);
        for k in 0..words {
            if k > 0 {
                text.push_str(["  ", "\t", " "][rng.below(3) as usize]);
            }
            // The product of two uniform draws favours small indices: a skewed distribution.
            let index = rng.below(500) * rng.below(500) / 500;
            text.push_str(&vocabulary[index as usize]);
        }
        text.push('\n');
    }
    text
}

/// The independent count: how often each whitespace-separated word occurs.
fn count_words<'a>(texts: impl IntoIterator<Item = &'a str>) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for text in texts {
        for word in text.split_whitespace() {
            *counts.entry(word.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn sorted_counts(counts: &HashMap<String, i64>) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = counts.iter().map(|(w, c)| (w.clone(), *c)).collect();
    v.sort();
    v
}

const SPLIT_SIZE: u64 = 4096;

/// A generated input file of 20 000 lines, and its text.
fn input_file(dir: &Path) -> (PathBuf, String) {
    let text = generate_text(42, 20_000);
    let path = dir.join("input.txt");
    fs::write(&path, &text).unwrap();
    // Many more splits than readers, so every reader takes several.
    assert!(text.len() as u64 > 20 * SPLIT_SIZE, "input too small to split: {} bytes", text.len());
    (path, text)
}

fn run_word_count(path: &Path, parallelism: usize, mode: RuntimeMode) -> Vec<(String, i64)> {
    let env = StreamExecutionEnvironment::local().with_parallelism(parallelism);
    env.set_runtime_mode(mode);
    let lines = env.from_source(TextFileSource::new(path).with_split_size(SPLIT_SIZE), "File");
    word_count(&lines).execute_and_collect().unwrap()
}

#[test]
fn batch_word_count_equals_an_independent_count_at_every_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = input_file(dir.path());
    let expected = sorted_counts(&count_words([text.as_str()]));
    for parallelism in [1, 2, 4] {
        let mut got = run_word_count(&path, parallelism, RuntimeMode::Batch);
        got.sort();
        assert_eq!(got.len(), expected.len(), "one result per word at parallelism {parallelism}");
        assert_eq!(got, expected, "parallelism {parallelism}");
    }
}

#[test]
fn streaming_word_count_emits_every_intermediate_count_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = input_file(dir.path());
    let expected = count_words([text.as_str()]);
    for parallelism in [1, 2, 4] {
        let got = run_word_count(&path, parallelism, RuntimeMode::Streaming);
        let mut per_word: HashMap<String, Vec<i64>> = HashMap::new();
        for (word, count) in got {
            per_word.entry(word).or_default().push(count);
        }
        assert_eq!(per_word.len(), expected.len(), "parallelism {parallelism}");
        for (word, n) in &expected {
            let counts = per_word.get(word).unwrap_or_else(|| panic!("no count for {word:?}"));
            // Records of one key stay in order through the keyed exchange and the sink.
            assert!(
                counts.iter().copied().eq(1..=*n),
                "parallelism {parallelism}: counts of {word:?} should be 1..={n}, got {counts:?}"
            );
        }
    }
}

#[test]
fn read_text_file_reads_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = input_file(dir.path());
    let env = StreamExecutionEnvironment::local().with_parallelism(2);
    env.set_runtime_mode(RuntimeMode::Batch);
    let mut got = word_count(&env.read_text_file(&path)).execute_and_collect().unwrap();
    got.sort();
    assert_eq!(got, sorted_counts(&count_words([text.as_str()])));
}

#[test]
fn directory_input_counts_the_words_of_every_visible_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    fs::create_dir_all(input.join("nested")).unwrap();
    let mut visible = Vec::new();
    for (i, name) in ["a.txt", "b.txt", "c.log", "nested/d.txt", "nested/e"].iter().enumerate() {
        let text = generate_text(100 + i as u64, 1_500 + 700 * i);
        fs::write(input.join(name), &text).unwrap();
        visible.push(text);
    }
    // Flink's default filter skips names starting with '.' or '_'.
    fs::write(input.join(".hidden"), "hidden hidden hidden\n").unwrap();
    fs::write(input.join("_SUCCESS"), "marker\n").unwrap();
    let expected = sorted_counts(&count_words(visible.iter().map(String::as_str)));

    for parallelism in [1, 3] {
        let env = StreamExecutionEnvironment::local().with_parallelism(parallelism);
        env.set_runtime_mode(RuntimeMode::Batch);
        let lines = env.from_source(TextFileSource::new(&input).with_split_size(SPLIT_SIZE), "Dir");
        let mut got = word_count(&lines).execute_and_collect().unwrap();
        got.sort();
        assert_eq!(got, expected, "parallelism {parallelism}");
    }
}

/// `(word,count)`, Flink's `Tuple2.toString`.
fn parse_tuple(line: &str) -> (String, i64) {
    let inner = line.strip_prefix('(').and_then(|l| l.strip_suffix(')'));
    let (word, count) =
        inner.and_then(|l| l.rsplit_once(',')).unwrap_or_else(|| panic!("not (word,count): {line:?}"));
    (word.to_string(), count.parse().unwrap_or_else(|_| panic!("bad count in {line:?}")))
}

#[test]
fn write_as_text_writes_one_part_file_per_subtask_in_tuple_format() {
    let dir = tempfile::tempdir().unwrap();
    let (path, text) = input_file(dir.path());
    let out_dir = dir.path().join("out");
    let parallelism = 3;
    let env = StreamExecutionEnvironment::local().with_parallelism(parallelism);
    env.set_runtime_mode(RuntimeMode::Batch);
    let lines = env.from_source(TextFileSource::new(&path).with_split_size(SPLIT_SIZE), "File");
    word_count(&lines).write_as_text(&out_dir);
    env.execute("word count to files").unwrap();

    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for subtask in 0..parallelism {
        let part = out_dir.join(format!("part-{subtask}-0"));
        let content = fs::read_to_string(&part).unwrap_or_else(|e| panic!("{}: {e}", part.display()));
        for line in content.lines() {
            let (word, count) = parse_tuple(line);
            assert!(got.insert(word.clone(), count).is_none(), "{word:?} written twice");
        }
    }
    let expected: BTreeMap<String, i64> = count_words([text.as_str()]).into_iter().collect();
    assert_eq!(got, expected);
}
