//! Text files in and out: Flink's `readTextFile` and `writeAsText`.
//!
//! [`TextFileSource`] reads a file, or every visible file under a directory, one line per record.
//! Its enumerator cuts each file into byte ranges ([`FileSplit`]s) so that several readers can
//! share one large file. A range does not know where lines begin, so every reader follows
//! Hadoop's rule: a split owns exactly the lines whose first byte lies in `[start, end)`. A
//! reader of a split that does not start at 0 skips the line it lands in the middle of (its
//! owner is the previous split) and reads its last line to the end even past `end`. Every line
//! is then read exactly once, whatever the split size.
//!
//! [`TextFileSink`] writes one file per parallel subtask, `part-{subtask}-0`, one record per
//! line in Flink's `toString` format (see [`RecordDisplay`]).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eddy_core::{Batch, Data, EddyError, RecordDisplay, Result, ShowRecord};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::sink::{Sink, SinkContext, SinkWriter};
use eddy_runtime::source::{
    Boundedness, ReaderContext, ReaderStatus, Source, SourceOutput, SourceReader, SourceSplit,
    SplitAssignment, SplitEnumerator,
};

/// The split size used unless [`TextFileSource::with_split_size`] says otherwise.
pub const DEFAULT_SPLIT_SIZE: u64 = 32 * 1024 * 1024;

const READ_BUFFER: usize = 1024 * 1024;
const WRITE_BUFFER: usize = 256 * 1024;

/// A byte range `[start, end)` of one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSplit {
    pub path: PathBuf,
    pub start: u64,
    pub end: u64,
}

impl SourceSplit for FileSplit {
    fn split_id(&self) -> String {
        format!("{}:{}-{}", self.path.display(), self.start, self.end)
    }
}

/// Reads text files line by line, as Flink's `env.readTextFile(path)`.
///
/// `path` is a file or a directory; a directory is read recursively, in path order, skipping
/// files and directories whose name starts with `.` or `_` (as Flink does). Lines end at `\n`;
/// a trailing `\r` is removed too. The source is bounded.
///
/// ```no_run
/// use eddy::connectors::file::TextFileSource;
///
/// let source = TextFileSource::new("/data/logs").with_split_size(8 * 1024 * 1024);
/// // At most 100 lines per second over all readers: a run that can be watched, stopped or
/// // savepointed half way.
/// let slow = TextFileSource::new("/data/logs").with_rate(100.0);
/// ```
#[derive(Debug, Clone)]
pub struct TextFileSource {
    path: PathBuf,
    split_size: u64,
    /// Lines per second over all readers; `None`: as fast as possible.
    rate: Option<f64>,
}

impl TextFileSource {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TextFileSource { path: path.into(), split_size: DEFAULT_SPLIT_SIZE, rate: None }
    }

    /// Cuts files into splits of `bytes` bytes (at least 1).
    pub fn with_split_size(mut self, bytes: u64) -> Self {
        self.split_size = bytes.max(1);
        self
    }

    /// Reads at most `lines_per_second` lines per second, shared evenly by the parallel
    /// readers. A reader ahead of its rate reports that nothing is available and when its next
    /// line is due, so its task keeps handling checkpoints and timers while it waits. A rate
    /// that is not a positive, finite number is an error when the job starts.
    pub fn with_rate(mut self, lines_per_second: f64) -> Self {
        self.rate = Some(lines_per_second);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Source for TextFileSource {
    type Output = String;
    type Split = FileSplit;
    type Reader = TextFileReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(&self, _parallelism: usize) -> Result<Box<dyn SplitEnumerator<FileSplit>>> {
        let mut splits = VecDeque::new();
        for (path, len) in list_input_files(&self.path)? {
            let mut start = 0;
            while start < len {
                let end = start.saturating_add(self.split_size).min(len);
                splits.push_back(FileSplit { path: path.clone(), start, end });
                start = end;
            }
        }
        Ok(Box::new(FileSplitEnumerator { splits }))
    }

    fn create_reader(&self, ctx: &ReaderContext) -> Result<TextFileReader> {
        let mut reader = TextFileReader::new();
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(EddyError::Config {
                    key: "text file source rate".into(),
                    value: rate.to_string(),
                    reason: "must be a positive, finite number of lines per second".into(),
                });
            }
            reader.throttle = Some(Throttle::new(rate / ctx.parallelism.max(1) as f64));
        }
        Ok(reader)
    }
}

/// Paces a reader to a rate: by time `t` after its first line it may have emitted
/// `rate * t` lines, plus one.
#[derive(Debug, Clone)]
struct Throttle {
    rate: f64,
    start: Option<Instant>,
    emitted: u64,
}

impl Throttle {
    fn new(rate: f64) -> Self {
        Throttle { rate, start: None, emitted: 0 }
    }

    /// How many lines may go at `now`.
    fn allowed(&mut self, now: Instant) -> u64 {
        let start = *self.start.get_or_insert(now);
        let due = (now.duration_since(start).as_secs_f64() * self.rate) as u64 + 1;
        due.saturating_sub(self.emitted)
    }

    /// When the next line is due.
    fn next_due(&self) -> Option<Instant> {
        let offset = Duration::try_from_secs_f64(self.emitted as f64 / self.rate).ok()?;
        self.start?.checked_add(offset)
    }
}

/// The regular files to read with their lengths: `path` itself, or the visible files under it.
fn list_input_files(path: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let meta = fs::metadata(path).map_err(|e| EddyError::io("cannot read input", path, e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        collect_dir(path, &mut files)?;
    } else {
        files.push((path.to_path_buf(), meta.len()));
    }
    Ok(files)
}

fn collect_dir(dir: &Path, files: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    let list_err = |e| EddyError::io("cannot list input directory", dir, e);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        if !is_hidden(&entry.file_name()) {
            entries.push(entry.path());
        }
    }
    entries.sort();
    for path in entries {
        // `metadata` follows symbolic links, so a link to a file is read like the file.
        let meta = fs::metadata(&path).map_err(|e| EddyError::io("cannot read input", &path, e))?;
        if meta.is_dir() {
            collect_dir(&path, files)?;
        } else if meta.is_file() {
            files.push((path, meta.len()));
        }
    }
    Ok(())
}

/// Flink's default file filter: names starting with `.` or `_` are metadata, not input.
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.starts_with(b".") || name.starts_with(b"_")
}

/// Hands out the file splits, in order, to whichever reader asks first.
struct FileSplitEnumerator {
    splits: VecDeque<FileSplit>,
}

impl SplitEnumerator<FileSplit> for FileSplitEnumerator {
    fn request_split(&mut self, _subtask: usize) -> Result<SplitAssignment<FileSplit>> {
        Ok(match self.splits.pop_front() {
            Some(split) => SplitAssignment::Split(split),
            None => SplitAssignment::NoMoreSplits,
        })
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<FileSplit>> {
        Ok(self.splits.iter().cloned().collect())
    }
}

/// Reads the lines of its [`FileSplit`]s, a batch per poll.
pub struct TextFileReader {
    pending: VecDeque<FileSplit>,
    current: Option<OpenSplit>,
    /// Reused for every line, so reading a line allocates only its `String`.
    line: Vec<u8>,
    throttle: Option<Throttle>,
}

impl TextFileReader {
    fn new() -> Self {
        TextFileReader { pending: VecDeque::new(), current: None, line: Vec::new(), throttle: None }
    }
}

impl SourceReader for TextFileReader {
    type Output = String;
    type Split = FileSplit;

    fn add_split(&mut self, split: FileSplit) -> Result<()> {
        self.pending.push_back(split);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<String>) -> Result<ReaderStatus> {
        let mut budget = match &mut self.throttle {
            Some(t) if self.current.is_some() || !self.pending.is_empty() => t.allowed(Instant::now()),
            _ => u64::MAX,
        };
        if budget == 0 {
            return Ok(ReaderStatus::NothingAvailable);
        }
        let before = budget;
        let status = self.read(out, &mut budget);
        if let Some(t) = &mut self.throttle {
            t.emitted += before - budget;
        }
        status
    }

    fn available_at(&self) -> Option<Instant> {
        self.throttle.as_ref().and_then(Throttle::next_due)
    }

    /// The split being read, from the byte offset of its next unread line, and the splits not
    /// opened yet. A split restored at an offset inside the file skips to the next line start
    /// like any split does, and the byte before that offset is the previous line's `\n`, so
    /// the restored reader goes on with exactly the next line.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<FileSplit>> {
        let current = self.current.as_ref().filter(|c| c.pos < c.split.end).map(|c| FileSplit {
            path: c.split.path.clone(),
            start: c.pos,
            end: c.split.end,
        });
        Ok(current.into_iter().chain(self.pending.iter().cloned()).collect())
    }

    fn close(&mut self) -> Result<()> {
        self.current = None;
        Ok(())
    }
}

impl TextFileReader {
    /// Reads up to a batch of lines, and at most `budget` (decremented per line).
    fn read(&mut self, out: &mut SourceOutput<String>, budget: &mut u64) -> Result<ReaderStatus> {
        loop {
            let mut current = match self.current.take() {
                Some(current) => current,
                None => match self.pending.pop_front() {
                    Some(split) => OpenSplit::open(split)?,
                    None => return Ok(ReaderStatus::NeedsSplit),
                },
            };
            if !current.read_lines(out, &mut self.line, budget)? {
                self.current = Some(current);
                return Ok(ReaderStatus::MoreAvailable);
            }
            if out.remaining() == 0 || *budget == 0 {
                return Ok(ReaderStatus::MoreAvailable);
            }
        }
    }
}

/// A split being read: `pos` is the file offset of the next unread byte.
struct OpenSplit {
    split: FileSplit,
    reader: BufReader<File>,
    pos: u64,
}

impl OpenSplit {
    /// Opens the file and positions it at the first line this split owns.
    fn open(split: FileSplit) -> Result<Self> {
        let path = &split.path;
        let mut file = File::open(path).map_err(|e| EddyError::io("cannot open input file", path, e))?;
        let mut pos = split.start;
        if split.start > 0 {
            // Starting one byte early means a line beginning exactly at `start` is kept: the
            // skipped "line" is then just the previous line's '\n'.
            pos = split.start - 1;
            file.seek(SeekFrom::Start(pos))
                .map_err(|e| EddyError::io("cannot seek in input file", path, e))?;
        }
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        if split.start > 0 {
            let mut skipped = Vec::new();
            pos += read_line(&mut reader, &mut skipped, path)?;
        }
        Ok(OpenSplit { split, reader, pos })
    }

    /// Emits lines until `out` is full or `budget` is spent (returns `false`) or the split is
    /// done (returns `true`).
    fn read_lines(
        &mut self,
        out: &mut SourceOutput<String>,
        line: &mut Vec<u8>,
        budget: &mut u64,
    ) -> Result<bool> {
        while out.remaining() > 0 && *budget > 0 {
            if self.pos >= self.split.end {
                return Ok(true);
            }
            line.clear();
            let n = read_line(&mut self.reader, line, &self.split.path)?;
            if n == 0 {
                return Ok(true);
            }
            let line_start = self.pos;
            self.pos += n;
            *budget -= 1;
            out.collect(decode_line(line, &self.split.path, line_start)?);
        }
        Ok(false)
    }
}

/// Reads through the next '\n' (or to the end of the file); returns the bytes read.
fn read_line(reader: &mut BufReader<File>, buf: &mut Vec<u8>, path: &Path) -> Result<u64> {
    let n = reader.read_until(b'\n', buf).map_err(|e| EddyError::io("cannot read input file", path, e))?;
    Ok(n as u64)
}

/// The line without its "\n" or "\r\n", as UTF-8 text.
fn decode_line(line: &[u8], path: &Path, line_start: u64) -> Result<String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(text) => Ok(text.to_owned()),
        Err(e) => Err(EddyError::BadInput {
            location: format!("{} at byte offset {}", path.display(), line_start + e.valid_up_to() as u64),
            reason: format!("invalid UTF-8 in the line starting at byte offset {line_start}"),
        }),
    }
}

/// Writes records as text lines, as Flink's `writeAsText(dir)`.
///
/// Subtask `i` writes `dir/part-{i}-0`, replacing a file of that name; `dir` is created if
/// missing. Each record is one line in its [`RecordDisplay`] form, so `("a", 1)` is `(a,1)`.
///
/// When the job takes checkpoints the sink is exactly-once, by two-phase commit: subtask `i`
/// writes `.part-{i}-{n}.inprogress`; when a checkpoint's barrier arrives the file is closed
/// and renamed `.part-{i}-{n}.pending`, and writing goes on in file `n + 1`; when that
/// checkpoint completes, its pending files become `part-{i}-{n}`. After a failure the job
/// restores the latest completed checkpoint: its pending files are committed (never twice:
/// a committed file is left as it is), and every file of the subtask from after that
/// checkpoint is deleted, since the restarted job writes those records again. At the end of
/// the input everything is committed. Readers see only whole `part-*` files, each record once.
#[derive(Debug, Clone)]
pub struct TextFileSink {
    dir: PathBuf,
}

impl TextFileSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TextFileSink { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that subtask `subtask_index` writes.
    pub fn part_file(&self, subtask_index: usize) -> PathBuf {
        self.dir.join(format!("part-{subtask_index}-0"))
    }
}

impl<T: Data + RecordDisplay> Sink<T> for TextFileSink {
    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        if ctx.checkpointing {
            // Files are touched only in `restore`, which knows what a restart must keep.
            return Ok(Box::new(CommittingWriter::new(&self.dir, ctx.subtask_index)));
        }
        Ok(Box::new(TextFileWriter::create(&self.dir, self.part_file(ctx.subtask_index))?))
    }
}

/// The exactly-once writer of one subtask (see [`TextFileSink`]).
struct CommittingWriter {
    dir: PathBuf,
    subtask: usize,
    /// The index of the file being written (or to be written next).
    next: u64,
    current: Option<(PathBuf, BufWriter<File>)>,
    /// (checkpoint, file index) of files waiting for their checkpoint to complete.
    pending: Vec<(u64, u64)>,
}

fn pending_file(dir: &Path, subtask: usize, n: u64) -> PathBuf {
    dir.join(format!(".part-{subtask}-{n}.pending"))
}

/// Whether `name` is a file of `subtask` (`part-i-n` committed, `.part-i-n.pending` or
/// `.part-i-n.inprogress`), and its index `n`.
fn parse_part_name(name: &str, subtask: usize) -> Option<(bool, u64)> {
    let (hidden, rest) = match name.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let rest = rest.strip_prefix("part-")?;
    let rest = if hidden {
        rest.strip_suffix(".pending").or_else(|| rest.strip_suffix(".inprogress"))?
    } else {
        rest
    };
    let (i, n) = rest.split_once('-')?;
    (i.parse::<usize>().ok()? == subtask).then_some(())?;
    Some((!hidden, n.parse().ok()?))
}

/// What a checkpoint holds of a [`CommittingWriter`].
#[derive(serde::Serialize, serde::Deserialize)]
struct CommitState {
    next: u64,
    pending: Vec<(u64, u64)>,
}

impl CommittingWriter {
    fn new(dir: &Path, subtask: usize) -> Self {
        CommittingWriter { dir: dir.to_path_buf(), subtask, next: 0, current: None, pending: Vec::new() }
    }

    fn committed(&self, n: u64) -> PathBuf {
        self.dir.join(format!("part-{}-{n}", self.subtask))
    }
    fn pending_file(&self, n: u64) -> PathBuf {
        pending_file(&self.dir, self.subtask, n)
    }
    fn in_progress(&self, n: u64) -> PathBuf {
        self.dir.join(format!(".part-{}-{n}.inprogress", self.subtask))
    }

    /// Makes pending file `n` of `subtask` visible; a file already committed stays as it is.
    fn commit_file(&self, subtask: usize, n: u64) -> Result<()> {
        let pending = pending_file(&self.dir, subtask, n);
        let committed = self.dir.join(format!("part-{subtask}-{n}"));
        match fs::rename(&pending, &committed) {
            Ok(()) => Ok(()),
            Err(_) if committed.exists() => Ok(()),
            Err(e) => Err(EddyError::io("cannot commit output file", &pending, e)),
        }
    }

    /// Removes the files of `subtask` from index `from` on (what it wrote after the checkpoint,
    /// which this attempt writes again) and every file of it still pending or in progress (the
    /// checkpoint's own pending files are committed before). Returns the highest index of a
    /// committed file kept.
    fn remove_after(&self, subtask: usize, from: u64) -> Result<Option<u64>> {
        let listing = |e| EddyError::io("cannot list output directory", &self.dir, e);
        let mut last_committed = None;
        for entry in fs::read_dir(&self.dir).map_err(listing)? {
            let entry = entry.map_err(listing)?;
            let name = entry.file_name();
            let Some((committed, n)) = parse_part_name(&name.to_string_lossy(), subtask) else { continue };
            if n >= from || !committed {
                fs::remove_file(entry.path())
                    .map_err(|e| EddyError::io("cannot remove output file", entry.path(), e))?;
            } else if committed {
                last_committed = last_committed.max(Some(n));
            }
        }
        Ok(last_committed)
    }

    /// Closes the file being written and renames it to `to`.
    fn close_current(&mut self, to: &Path) -> Result<bool> {
        let Some((path, mut out)) = self.current.take() else { return Ok(false) };
        out.flush().map_err(|e| write_error(&path, e))?;
        out.get_ref().sync_all().map_err(|e| write_error(&path, e))?;
        drop(out);
        fs::rename(&path, to).map_err(|e| EddyError::io("cannot rename output file", &path, e))?;
        Ok(true)
    }
}

impl<T: RecordDisplay> SinkWriter<T> for CommittingWriter {
    /// Commits the pending files of the restored checkpoint and deletes what was written after
    /// it. After a rescale, the old subtasks' states are dealt out like even-split list state:
    /// each new subtask finishes the files of the old subtasks it was given.
    fn restore(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| EddyError::io("cannot create output directory", &self.dir, e))?;
        let mut own_next = None;
        if let Some(restored) = restored {
            let states: Vec<(usize, CommitState)> = restored
                .states
                .iter()
                .map(|(old, bytes)| Ok((*old, eddy_core::codec::decode_value::<CommitState>(bytes)?)))
                .collect::<Result<_>>()?;
            for (old, state) in restored.even_split(states) {
                for &(_, n) in &state.pending {
                    self.commit_file(old, n)?;
                }
                if old == self.subtask {
                    own_next = Some(state.next);
                } else {
                    self.remove_after(old, state.next)?;
                }
            }
        }
        // A fresh start replaces this subtask's files. A subtask a rescale added keeps what an
        // earlier, wider run committed under its index and numbers on after it.
        let keep_committed = restored.is_some() && own_next.is_none();
        let from = if keep_committed { u64::MAX } else { own_next.unwrap_or(0) };
        let last_committed = self.remove_after(self.subtask, from)?;
        self.next = match own_next {
            Some(next) => next,
            None if keep_committed => last_committed.map_or(0, |n| n + 1),
            None => 0,
        };
        Ok(())
    }

    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        if self.current.is_none() {
            let path = self.in_progress(self.next);
            let file =
                File::create(&path).map_err(|e| EddyError::io("cannot create output file", &path, e))?;
            self.current = Some((path, BufWriter::with_capacity(WRITE_BUFFER, file)));
        }
        if let Some((path, out)) = &mut self.current {
            for value in &batch.values {
                writeln!(out, "{}", ShowRecord(value)).map_err(|e| write_error(path, e))?;
            }
        }
        Ok(())
    }

    fn prepare_commit(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>> {
        let pending = self.pending_file(self.next);
        if self.close_current(&pending)? {
            self.pending.push((checkpoint_id, self.next));
            self.next += 1;
        }
        let state = CommitState { next: self.next, pending: self.pending.clone() };
        let mut bytes = Vec::new();
        eddy_core::codec::encode_value(&state, &mut bytes)?;
        Ok(Some(bytes))
    }

    fn commit(&mut self, checkpoint_id: u64) -> Result<()> {
        let (done, waiting): (Vec<_>, Vec<_>) = self.pending.iter().partition(|(c, _)| *c <= checkpoint_id);
        for (_, n) in done {
            self.commit_file(self.subtask, n)?;
        }
        self.pending = waiting;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let last = self.committed(self.next);
        if self.close_current(&last)? {
            self.next += 1;
        }
        for (_, n) in std::mem::take(&mut self.pending) {
            self.commit_file(self.subtask, n)?;
        }
        Ok(())
    }
}

/// One subtask's part file.
struct TextFileWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl TextFileWriter {
    fn create(dir: &Path, path: PathBuf) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| EddyError::io("cannot create output directory", dir, e))?;
        let file = File::create(&path).map_err(|e| EddyError::io("cannot create output file", &path, e))?;
        Ok(TextFileWriter { path, out: BufWriter::with_capacity(WRITE_BUFFER, file) })
    }
}

impl<T: RecordDisplay> SinkWriter<T> for TextFileWriter {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        for value in &batch.values {
            writeln!(self.out, "{}", ShowRecord(value)).map_err(|e| write_error(&self.path, e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| write_error(&self.path, e))
    }

    fn finish(&mut self) -> Result<()> {
        SinkWriter::<T>::flush(self)
    }
}

fn write_error(path: &Path, e: std::io::Error) -> EddyError {
    EddyError::io("cannot write output file", path, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BATCH: usize = 4;

    fn ctx() -> ReaderContext {
        ReaderContext { subtask_index: 0, parallelism: 1, batch_size: BATCH }
    }

    /// Reads the whole source with `readers` readers taking splits in turn, as the runtime does.
    fn read_all(source: &TextFileSource, readers: usize) -> Result<Vec<String>> {
        let mut enumerator = source.create_enumerator(readers)?;
        let mut readers: Vec<TextFileReader> =
            (0..readers).map(|_| source.create_reader(&ctx())).collect::<Result<_>>()?;
        let mut done = vec![false; readers.len()];
        let mut lines = Vec::new();
        let mut out = SourceOutput::new(BATCH);
        while done.iter().any(|d| !d) {
            for (i, reader) in readers.iter_mut().enumerate() {
                if done[i] {
                    continue;
                }
                let status = reader.poll_next(&mut out)?;
                let batch = out.take();
                assert!(batch.len() <= BATCH);
                lines.extend(batch.values);
                if status == ReaderStatus::NeedsSplit {
                    match enumerator.request_split(i)? {
                        SplitAssignment::Split(s) => reader.add_split(s)?,
                        SplitAssignment::NoMoreSplits => done[i] = true,
                        SplitAssignment::NotYet => panic!("a file enumerator always knows"),
                    }
                }
            }
        }
        Ok(lines)
    }

    /// The lines as a plain reader of the whole file sees them.
    fn expected_lines(content: &str) -> Vec<String> {
        content.lines().map(str::to_owned).collect()
    }

    const SPLIT_SIZES: [u64; 8] = [1, 2, 3, 5, 7, 16, 64, 1 << 20];

    fn check_file(content: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input.txt");
        fs::write(&path, content).unwrap();
        for split_size in SPLIT_SIZES {
            for readers in [1, 3] {
                let source = TextFileSource::new(&path).with_split_size(split_size);
                let mut got = read_all(&source, readers).unwrap();
                let mut want = expected_lines(content);
                if readers > 1 {
                    got.sort();
                    want.sort();
                }
                assert_eq!(got, want, "split size {split_size}, {readers} readers, {content:?}");
            }
        }
    }

    #[test]
    fn every_line_exactly_once_for_any_split_size() {
        check_file("a\nbb\nccc\n");
        check_file("first line\nsecond\n\n\nfifth after two empty lines\nlast without newline");
        check_file("\n\n\n");
        check_file("\n");
        check_file("x");
        check_file("windows\r\nline endings\r\n\r\nend\r\n");
        check_file("mixed\r\nendings\nand a lone \r inside\n");
        check_file("ünïcödé → lines\nwith multibyte 字符 split anywhere\n日本語");
        let long: String = (0..200).map(|i| format!("line {i} {}\n", "x".repeat(i % 13))).collect();
        check_file(&long);
    }

    #[test]
    fn a_throttle_allows_its_rate_and_says_when_the_next_line_is_due() {
        let mut t = Throttle::new(1000.0);
        let start = Instant::now();
        assert_eq!(t.allowed(start), 1, "the first line goes at once");
        t.emitted = 1;
        assert_eq!(t.allowed(start), 0);
        assert_eq!(t.next_due(), Some(start + Duration::from_millis(1)));
        assert_eq!(t.allowed(start + Duration::from_millis(10)), 10);
    }

    #[test]
    fn a_throttled_reader_reports_nothing_available_until_its_next_line_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        fs::write(&path, "a\nb\nc\n").unwrap();
        // One line every ten seconds: the second poll comes long before the second line is due.
        let source = TextFileSource::new(&path).with_rate(0.1);
        let mut enumerator = source.create_enumerator(1).unwrap();
        let mut reader = source.create_reader(&ctx()).unwrap();
        let SplitAssignment::Split(split) = enumerator.request_split(0).unwrap() else { panic!() };
        reader.add_split(split).unwrap();
        let mut out = SourceOutput::new(BATCH);
        let before = Instant::now();
        assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::MoreAvailable);
        assert_eq!(out.take().values, vec!["a".to_string()]);
        assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::NothingAvailable);
        assert!(out.is_empty());
        let due = reader.available_at().expect("a throttled reader knows when it goes on");
        assert!(due >= before + Duration::from_secs(9), "{:?}", due - before);
        let err = source_error(TextFileSource::new(&path).with_rate(0.0));
        assert!(err.contains("lines per second"), "{err}");
    }

    fn source_error(source: TextFileSource) -> String {
        source.create_reader(&ctx()).err().expect("a bad rate is refused").to_string()
    }

    #[test]
    fn a_restored_reader_goes_on_with_the_next_line() {
        use crate::connectors::conformance::assert_restores_change_nothing;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let content: String = (0..40).map(|i| format!("line {i}{}\n", "x".repeat(i % 7))).collect();
        std::fs::write(&path, format!("{content}no newline at the end")).unwrap();
        for split_size in [1, 16, 100, 10_000] {
            assert_restores_change_nothing(&TextFileSource::new(&path).with_split_size(split_size));
        }
        std::fs::write(&path, "a\r\nb\r\n\r\nc\r\n").unwrap();
        assert_restores_change_nothing(&TextFileSource::new(&path).with_split_size(3));
    }

    #[test]
    fn a_reader_snapshot_is_the_byte_offset_of_its_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "aa\nbbb\nc\nd\ne\nf\n").unwrap();
        let mut reader = TextFileReader::new();
        reader.add_split(FileSplit { path: path.clone(), start: 0, end: 13 }).unwrap();
        let mut out = SourceOutput::new(BATCH);
        reader.poll_next(&mut out).unwrap();
        assert_eq!(out.take().values, vec!["aa", "bbb", "c", "d"]);
        assert_eq!(
            reader.snapshot_state(1).unwrap(),
            vec![FileSplit { path: path.clone(), start: 11, end: 13 }]
        );
        let mut restored = TextFileReader::new();
        for split in reader.snapshot_state(1).unwrap() {
            restored.add_split(split).unwrap();
        }
        restored.poll_next(&mut out).unwrap();
        assert_eq!(out.take().values, vec!["e"], "the split owns the lines starting before byte 13");
    }

    #[test]
    fn line_starting_exactly_at_a_split_boundary_is_read_once() {
        // "ab\n" is 3 bytes, so with split size 3 every line starts at a split start.
        check_file("ab\ncd\nef\n");
        check_file("ab\ncd\nef");
    }

    #[test]
    fn empty_file_gives_no_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.txt");
        fs::write(&path, "").unwrap();
        let mut enumerator = TextFileSource::new(&path).create_enumerator(1).unwrap();
        assert!(matches!(enumerator.request_split(0).unwrap(), SplitAssignment::NoMoreSplits));
    }

    #[test]
    fn splits_cover_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "0123456789").unwrap();
        let mut enumerator = TextFileSource::new(&path).with_split_size(4).create_enumerator(2).unwrap();
        let mut ranges = Vec::new();
        while let SplitAssignment::Split(s) = enumerator.request_split(0).unwrap() {
            assert_eq!(s.split_id(), format!("{}:{}-{}", path.display(), s.start, s.end));
            ranges.push((s.start, s.end));
        }
        assert_eq!(ranges, vec![(0, 4), (4, 8), (8, 10)]);
    }

    #[test]
    fn directory_is_read_recursively_in_path_order_skipping_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::create_dir_all(root.join("_temporary")).unwrap();
        fs::create_dir_all(root.join(".hidden_dir")).unwrap();
        fs::write(root.join("b.txt"), "b1\nb2\n").unwrap();
        fs::write(root.join("a.txt"), "a1\r\na2").unwrap();
        fs::write(root.join("sub/c.txt"), "c1\n\nc3\n").unwrap();
        fs::write(root.join("sub/deeper/d.txt"), "d1\n").unwrap();
        fs::write(root.join("sub/empty.txt"), "").unwrap();
        fs::write(root.join(".crc"), "hidden\n").unwrap();
        fs::write(root.join("_SUCCESS"), "hidden\n").unwrap();
        fs::write(root.join("_temporary/part"), "hidden\n").unwrap();
        fs::write(root.join(".hidden_dir/part"), "hidden\n").unwrap();

        let want = ["a1", "a2", "b1", "b2", "c1", "", "c3", "d1"];
        for split_size in SPLIT_SIZES {
            let source = TextFileSource::new(root).with_split_size(split_size);
            assert_eq!(read_all(&source, 1).unwrap(), want, "split size {split_size}");
            let mut got = read_all(&source, 4).unwrap();
            got.sort();
            let mut sorted = want.to_vec();
            sorted.sort();
            assert_eq!(got, sorted, "split size {split_size}, 4 readers");
        }
    }

    #[test]
    fn a_poll_emits_at_most_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many.txt");
        let content: String = (0..100).map(|i| format!("{i}\n")).collect();
        fs::write(&path, &content).unwrap();
        let source = TextFileSource::new(&path);
        let mut enumerator = source.create_enumerator(1).unwrap();
        let mut reader = source.create_reader(&ctx()).unwrap();
        let SplitAssignment::Split(split) = enumerator.request_split(0).unwrap() else {
            panic!("expected a split");
        };
        reader.add_split(split).unwrap();
        let mut out = SourceOutput::new(10);
        assert_eq!(reader.poll_next(&mut out).unwrap(), ReaderStatus::MoreAvailable);
        assert_eq!(out.take().values, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn missing_input_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("does-not-exist");
        let err = TextFileSource::new(&path).create_enumerator(1).err().unwrap();
        assert!(matches!(&err, EddyError::Io { path: p, .. } if *p == path), "{err}");
        assert!(err.to_string().contains("does-not-exist"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_bad_input_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        fs::write(&path, b"good\nba\xffd\n").unwrap();
        let err = read_all(&TextFileSource::new(&path), 1).unwrap_err();
        match &err {
            EddyError::BadInput { location, .. } => {
                assert!(location.contains("bad.txt"), "{location}");
                assert!(location.contains("byte offset 7"), "{location}");
            }
            other => panic!("expected BadInput, got {other}"),
        }
    }

    #[test]
    fn sink_writes_one_part_file_per_subtask() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("out/nested");
        let sink = TextFileSink::new(&out_dir);
        for subtask in 0..2 {
            let ctx = SinkContext {
                subtask_index: subtask,
                parallelism: 2,
                operator_name: "Sink: text".into(),
                checkpointing: false,
            };
            let mut writer: Box<dyn SinkWriter<(String, i64)>> = sink.create_writer(&ctx).unwrap();
            writer.write_batch(Batch::from_values(vec![("a".into(), subtask as i64)])).unwrap();
            writer.flush().unwrap();
            writer.write_batch(Batch::from_values(vec![("b".into(), 2), ("c".into(), 3)])).unwrap();
            writer.finish().unwrap();
        }
        assert_eq!(fs::read_to_string(out_dir.join("part-0-0")).unwrap(), "(a,0)\n(b,2)\n(c,3)\n");
        assert_eq!(fs::read_to_string(out_dir.join("part-1-0")).unwrap(), "(a,1)\n(b,2)\n(c,3)\n");
    }

    #[test]
    fn sink_overwrites_an_existing_part_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("part-0-0"), "old content that is longer\n").unwrap();
        let sink = TextFileSink::new(dir.path());
        let ctx =
            SinkContext { subtask_index: 0, parallelism: 1, operator_name: "s".into(), checkpointing: false };
        let mut writer: Box<dyn SinkWriter<i64>> = sink.create_writer(&ctx).unwrap();
        writer.write_batch(Batch::from_values(vec![1, 2])).unwrap();
        writer.finish().unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("part-0-0")).unwrap(), "1\n2\n");
    }

    #[test]
    fn sink_flush_makes_records_visible() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextFileSink::new(dir.path());
        let ctx =
            SinkContext { subtask_index: 3, parallelism: 4, operator_name: "s".into(), checkpointing: false };
        let mut writer: Box<dyn SinkWriter<String>> = sink.create_writer(&ctx).unwrap();
        writer.write_batch(Batch::from_values(vec!["x".into()])).unwrap();
        writer.flush().unwrap();
        assert_eq!(fs::read_to_string(sink.part_file(3)).unwrap(), "x\n");
    }

    #[test]
    fn sink_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the output directory should be.
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, "").unwrap();
        let sink = TextFileSink::new(blocker.join("out"));
        let ctx =
            SinkContext { subtask_index: 0, parallelism: 1, operator_name: "s".into(), checkpointing: false };
        let err = Sink::<String>::create_writer(&sink, &ctx).err().unwrap();
        assert!(matches!(&err, EddyError::Io { .. }), "{err}");
        assert!(err.to_string().contains("blocker"), "{err}");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn write(w: &mut CommittingWriter, lines: &[&str]) {
        let batch = Batch::from_values(lines.iter().map(|l| l.to_string()).collect::<Vec<_>>());
        SinkWriter::<String>::write_batch(w, batch).unwrap();
    }

    /// What subtask `subtask` of `parallelism` gets back without a rescale.
    fn own(subtask: usize, parallelism: usize, state: Vec<u8>) -> RestoredState {
        let states = vec![(subtask, state)];
        rescaled(subtask, parallelism, parallelism, states)
    }

    fn rescaled(
        subtask: usize,
        parallelism: usize,
        old: usize,
        states: Vec<(usize, Vec<u8>)>,
    ) -> RestoredState {
        RestoredState::new("sink", states, old, subtask, parallelism, 128)
    }

    #[test]
    fn a_rescaled_sink_commits_the_pending_files_of_every_old_subtask_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // Two subtasks, each with a committed file, a file pending for checkpoint 2 and one
        // written after it.
        let mut states = Vec::new();
        for i in 0..2 {
            let mut w = CommittingWriter::new(&out, i);
            SinkWriter::<String>::restore(&mut w, None).unwrap();
            write(&mut w, &["early"]);
            SinkWriter::<String>::prepare_commit(&mut w, 1).unwrap();
            SinkWriter::<String>::commit(&mut w, 1).unwrap();
            write(&mut w, &[&format!("pending {i}")]);
            states.push((i, SinkWriter::<String>::prepare_commit(&mut w, 2).unwrap().unwrap()));
            write(&mut w, &["after the checkpoint"]);
        }
        // Resumed at parallelism 1: the one subtask finishes both old subtasks' files.
        let mut w = CommittingWriter::new(&out, 0);
        SinkWriter::<String>::restore(&mut w, Some(&rescaled(0, 1, 2, states.clone()))).unwrap();
        assert_eq!(names(&out), ["part-0-0", "part-0-1", "part-1-0", "part-1-1"]);
        assert_eq!(fs::read_to_string(out.join("part-1-1")).unwrap(), "pending 1\n");
        write(&mut w, &["new"]);
        SinkWriter::<String>::finish(&mut w).unwrap();
        assert_eq!(fs::read_to_string(out.join("part-0-2")).unwrap(), "new\n");

        // Resumed at parallelism 3 from the same checkpoint: subtask 2 is new; its numbering
        // cannot clash with anything, and it commits nobody's files twice.
        for i in 0..3 {
            let mut w = CommittingWriter::new(&out, i);
            SinkWriter::<String>::restore(&mut w, Some(&rescaled(i, 3, 2, states.clone()))).unwrap();
            write(&mut w, &[&format!("from {i}")]);
            SinkWriter::<String>::finish(&mut w).unwrap();
        }
        assert_eq!(
            names(&out),
            ["part-0-0", "part-0-1", "part-0-2", "part-1-0", "part-1-1", "part-1-2", "part-2-0"]
        );
        assert_eq!(fs::read_to_string(out.join("part-0-2")).unwrap(), "from 0\n");
        assert_eq!(fs::read_to_string(out.join("part-2-0")).unwrap(), "from 2\n");
    }

    #[test]
    fn the_committing_writer_shows_only_what_completed_checkpoints_cover() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut w = CommittingWriter::new(&out, 1);
        SinkWriter::<String>::restore(&mut w, None).unwrap();
        write(&mut w, &["a", "b"]);
        assert_eq!(names(&out), [".part-1-0.inprogress"]);
        let state1 = SinkWriter::<String>::prepare_commit(&mut w, 1).unwrap().unwrap();
        write(&mut w, &["c"]);
        let _state2 = SinkWriter::<String>::prepare_commit(&mut w, 2).unwrap().unwrap();
        write(&mut w, &["d"]);
        assert_eq!(names(&out), [".part-1-0.pending", ".part-1-1.pending", ".part-1-2.inprogress"]);
        SinkWriter::<String>::commit(&mut w, 1).unwrap();
        assert_eq!(names(&out), [".part-1-1.pending", ".part-1-2.inprogress", "part-1-0"]);
        assert_eq!(fs::read_to_string(out.join("part-1-0")).unwrap(), "a\nb\n");
        drop(w);

        // A failure; the job restores checkpoint 1 (its file was already committed, which
        // restoring leaves alone) and writes what came after it again.
        fs::write(out.join("part-0-5"), "another subtask's file\n").unwrap();
        let mut w = CommittingWriter::new(&out, 1);
        SinkWriter::<String>::restore(&mut w, Some(&own(1, 2, state1.clone()))).unwrap();
        assert_eq!(names(&out), ["part-0-5", "part-1-0"], "files from after checkpoint 1 are gone");
        write(&mut w, &["c", "d"]);
        SinkWriter::<String>::finish(&mut w).unwrap();
        assert_eq!(names(&out), ["part-0-5", "part-1-0", "part-1-1"]);
        assert_eq!(fs::read_to_string(out.join("part-1-1")).unwrap(), "c\nd\n");
    }

    #[test]
    fn restoring_commits_pending_files_of_the_checkpoint_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut w = CommittingWriter::new(&out, 0);
        SinkWriter::<String>::restore(&mut w, None).unwrap();
        write(&mut w, &["x"]);
        let state = SinkWriter::<String>::prepare_commit(&mut w, 7).unwrap().unwrap();
        drop(w); // failed before the checkpoint's completion reached the writer
        for _ in 0..2 {
            let mut w = CommittingWriter::new(&out, 0);
            SinkWriter::<String>::restore(&mut w, Some(&own(0, 1, state.clone()))).unwrap();
            assert_eq!(names(&out), ["part-0-0"]);
        }
        // A pending file that vanished is an error, not silently lost output.
        fs::remove_file(out.join("part-0-0")).unwrap();
        let mut w = CommittingWriter::new(&out, 0);
        let err =
            SinkWriter::<String>::restore(&mut w, Some(&own(0, 1, state.clone()))).unwrap_err().to_string();
        assert!(err.contains(".part-0-0.pending"), "{err}");
    }
}
