//! Job and cluster configuration: a flat map of string keys to string values, read through
//! typed options.
//!
//! # The model
//!
//! As in Flink, a [`Configuration`] is nothing more than `key -> value` text, with dotted keys
//! such as `parallelism.default` or `execution.buffer-timeout`. Meaning comes from a
//! [`ConfigOption`]: a key, a type, an optional default, a description and an optional
//! validator. Reading an option with [`Configuration::get`] parses the text into the option's
//! type ([`ConfigValue`]), falls back to the default when the key is absent and reports an
//! [`EddyError::Config`] naming the key and the bad value when the text cannot be used. Keys no
//! option knows about are kept untouched, so user code and connectors can read their own keys.
//!
//! The well-known options live in [`options`].
//!
//! # Where values come from
//!
//! From lowest to highest precedence (a later source overrides an earlier one):
//!
//! 1. `eddy.yaml` ([`CONF_FILE_NAME`]) in the configuration directory: `$EDDY_CONF_DIR`
//!    ([`CONF_DIR_ENV`]) when set (the file must then exist), otherwise `./conf` (the file is
//!    optional there);
//! 2. `$EDDY_PROPERTIES` ([`PROPERTIES_ENV`]): YAML text, usually `key: value` lines, the way
//!    `FLINK_PROPERTIES` works in Flink's Docker images;
//! 3. dynamic properties from the command line, `-Dkey=value` or `-D key=value`
//!    ([`parse_dynamic_properties`]), which the caller merges last;
//! 4. whatever the program sets itself.
//!
//! [`Configuration::load_default`] does steps 1 and 2.
//!
//! # YAML
//!
//! The file follows Flink's `config.yaml` conventions:
//!
//! ```yaml
//! parallelism:
//!   default: 4                     # nested maps flatten with '.': parallelism.default = 4
//! execution.buffer-timeout: 10 ms  # flat dotted keys work too
//! pipeline.jars: [a.jar, b.jar]    # lists become "a.jar;b.jar"
//! state.backend.type: ~            # null values are skipped
//! ```
//!
//! Scalars keep the text they were written with (`4`, `0.5`, `true`, `10 ms`). List items are
//! joined with `;`; an item that itself contains `;` or a quote is wrapped in single quotes
//! (with `'` doubled), and an item that is a map of scalars is written `k1:v1,k2:v2`, as Flink
//! does. A key that ends up set twice, a key that is not a plain scalar, or a list nested in a
//! list is an error naming the key and the line.
//!
//! ```
//! use std::path::Path;
//! use std::time::Duration;
//! use eddy_core::config::{options, Configuration};
//!
//! let yaml = "parallelism:\n  default: 4\nexecution.buffer-timeout: 10 ms\n";
//! let config = Configuration::from_yaml_str(yaml, Path::new("eddy.yaml")).unwrap();
//! assert_eq!(config.get_optional(&options::PARALLELISM_DEFAULT).unwrap(), Some(4));
//! assert_eq!(config.get(&options::BUFFER_TIMEOUT).unwrap(), Duration::from_millis(10));
//! assert_eq!(config.get(&options::TASK_SLOTS).unwrap(), 1); // the default
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::{IntErrorKind, ParseIntError};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use yaml_rust2::parser::{MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Event;

use crate::error::{EddyError, Result};

/// The environment variable naming the configuration directory (the one holding
/// [`CONF_FILE_NAME`]). When it is set, the file must exist there.
pub const CONF_DIR_ENV: &str = "EDDY_CONF_DIR";

/// The name of the configuration file inside the configuration directory.
pub const CONF_FILE_NAME: &str = "eddy.yaml";

/// The environment variable holding extra YAML configuration (typically `key: value` lines)
/// that overrides the file, like `FLINK_PROPERTIES` in Flink's Docker images.
pub const PROPERTIES_ENV: &str = "EDDY_PROPERTIES";

/// The configuration directory used when [`CONF_DIR_ENV`] is not set, relative to the working
/// directory. The file in it is optional.
pub const DEFAULT_CONF_DIR: &str = "conf";

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// A set of configuration entries: string keys to string values, in key order.
///
/// Raw access ([`set`](Self::set), [`get_raw`](Self::get_raw)) works on text; typed access
/// ([`get`](Self::get), [`get_optional`](Self::get_optional), [`set_value`](Self::set_value))
/// goes through a [`ConfigOption`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configuration {
    entries: BTreeMap<String, String>,
}

impl Configuration {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing any previous value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.entries.insert(key.into(), value.into());
        self
    }

    /// The text stored under `key`, if any.
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Removes `key`, returning the value it had.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.entries.remove(key)
    }

    /// Copies every entry of `other` into `self`; on a key set in both, `other` wins.
    pub fn merge(&mut self, other: &Configuration) {
        for (key, value) in &other.entries {
            self.entries.insert(key.clone(), value.clone());
        }
    }

    /// The entries as `(key, value)`, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A copy of the entries.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.entries.clone()
    }

    /// The entries as flat YAML, `"key": "value"` lines in key order, which
    /// [`from_yaml_str`](Self::from_yaml_str) reads back to the same configuration (for
    /// handing a configuration to another process as a file or in `$EDDY_PROPERTIES`).
    pub fn to_yaml(&self) -> String {
        let mut text = String::new();
        for (key, value) in &self.entries {
            text.push_str(&yaml_quoted(key));
            text.push_str(": ");
            text.push_str(&yaml_quoted(value));
            text.push('\n');
        }
        text
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `option`: parsed and validated when the key is set, the option's default
    /// otherwise.
    ///
    /// Errors with [`EddyError::Config`] (naming the key and the text) when the value does not
    /// parse or fails the option's validator, and when the key is absent and the option has no
    /// default (use [`get_optional`](Self::get_optional) for such options).
    pub fn get<T: ConfigValue + Clone>(&self, option: &ConfigOption<T>) -> Result<T> {
        match self.get_optional(option)? {
            Some(value) => Ok(value),
            None => option.default.clone().ok_or_else(|| EddyError::Config {
                key: option.key.to_string(),
                value: String::new(),
                reason: "no value is set and the option has no default".to_string(),
            }),
        }
    }

    /// The value of `option` when its key is set (parsed and validated), `None` when it is
    /// absent. The option's default is ignored.
    pub fn get_optional<T: ConfigValue>(&self, option: &ConfigOption<T>) -> Result<Option<T>> {
        let Some(raw) = self.get_raw(option.key) else {
            return Ok(None);
        };
        let value = T::parse_value(raw).map_err(|reason| EddyError::Config {
            key: option.key.to_string(),
            value: raw.to_string(),
            reason,
        })?;
        if let Some(validate) = option.validate {
            validate(&value).map_err(|reason| EddyError::Config {
                key: option.key.to_string(),
                value: raw.to_string(),
                reason,
            })?;
        }
        Ok(Some(value))
    }

    /// Stores `value` under `option`'s key, written with [`ConfigValue::to_value`].
    ///
    /// The validator is not run here; a bad value is reported when it is read (or call
    /// [`ConfigOption::check`] first).
    pub fn set_value<T: ConfigValue>(&mut self, option: &ConfigOption<T>, value: T) -> &mut Self {
        self.set(option.key, value.to_value())
    }

    /// Reads Flink-style `config.yaml` text.
    ///
    /// Nested maps flatten with `.`, scalars keep their written text, lists become their items
    /// joined with `;`, null values are skipped and an empty document gives an empty
    /// configuration (see the [module documentation](self)). `origin` names the source in
    /// errors, which are [`EddyError::ConfigFile`] with the line and column in the reason.
    pub fn from_yaml_str(text: &str, origin: &Path) -> Result<Configuration> {
        let file_error = |reason: String| EddyError::ConfigFile { path: origin.to_path_buf(), reason };

        let mut builder = TreeBuilder::default();
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut builder, true) {
            return Err(file_error(format!("YAML syntax error at {}: {}", position(e.marker()), e.info())));
        }
        if let Some((mark, message)) = builder.error {
            return Err(file_error(format!("{}: {message}", position(&mark))));
        }
        if let Some(mark) = builder.document_starts.get(1) {
            return Err(file_error(format!(
                "more than one YAML document (the second starts at {})",
                position(mark)
            )));
        }

        let mut flat: BTreeMap<String, (String, Marker)> = BTreeMap::new();
        match builder.documents.first() {
            None => {}
            Some(Node::Map { entries, .. }) => flatten_map("", entries, &mut flat)
                .map_err(|(mark, message)| file_error(format!("{}: {message}", position(&mark))))?,
            Some(node) if node.is_null() => {}
            Some(node) => {
                return Err(file_error(format!(
                    "expected a map of keys to values at the top level, found {} at {}",
                    node.kind(),
                    position(&node.mark())
                )))
            }
        }
        Ok(Configuration { entries: flat.into_iter().map(|(k, (v, _))| (k, v)).collect() })
    }

    /// Reads a Flink-style `config.yaml` file (see [`from_yaml_str`](Self::from_yaml_str)).
    ///
    /// A missing or unreadable file, or one that is not UTF-8, is an
    /// [`EddyError::ConfigFile`] naming the path.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Configuration> {
        read_yaml_file(path.as_ref(), None)
    }

    /// Loads the configuration from the environment: the configuration file of
    /// `$EDDY_CONF_DIR` (which must then exist) or of `./conf` (optional), overlaid with
    /// `$EDDY_PROPERTIES`. See [`load_from`](Self::load_from).
    pub fn load_default() -> Result<Configuration> {
        let conf_dir = env_var(CONF_DIR_ENV)?;
        let properties = env_var(PROPERTIES_ENV)?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Self::load_from(conf_dir.as_deref(), properties.as_deref(), &cwd)
    }

    /// [`load_default`](Self::load_default) with the environment passed in.
    ///
    /// - `conf_dir_env` is the value of `$EDDY_CONF_DIR` (`None`, or blank, when unset); a
    ///   relative directory is taken relative to `cwd`. When it is given, `eddy.yaml` must
    ///   exist in it; otherwise `cwd/conf/eddy.yaml` is read if it exists.
    /// - `properties_env` is the value of `$EDDY_PROPERTIES`: YAML text whose entries override
    ///   the file's.
    pub fn load_from(
        conf_dir_env: Option<&str>,
        properties_env: Option<&str>,
        cwd: &Path,
    ) -> Result<Configuration> {
        let mut config = match conf_dir_env.filter(|dir| !dir.trim().is_empty()) {
            Some(dir) => {
                let file = cwd.join(dir).join(CONF_FILE_NAME);
                let hint = format!("{CONF_DIR_ENV} is set to {dir:?} but it holds no {CONF_FILE_NAME}");
                read_yaml_file(&file, Some(&hint))?
            }
            None => {
                let file = cwd.join(DEFAULT_CONF_DIR).join(CONF_FILE_NAME);
                match std::fs::metadata(&file) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Configuration::new(),
                    _ => read_yaml_file(&file, None)?,
                }
            }
        };
        if let Some(text) = properties_env {
            let origin = PathBuf::from(format!("${PROPERTIES_ENV}"));
            config.merge(&Configuration::from_yaml_str(text, &origin)?);
        }
        Ok(config)
    }
}

/// `s` as a YAML double-quoted scalar.
fn yaml_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Configuration {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Configuration { entries: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Configuration {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.entries.extend(iter.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
}

/// Extracts Flink-style dynamic properties from command-line arguments.
///
/// `-Dkey=value` and `-D key=value` (two arguments) become entries (the value may be empty and
/// may contain `=`); every other argument is returned, in order. Parsing stops at `--`, which
/// is returned with everything after it. A `-D` without `key=value` (no `=`, an empty key, or
/// nothing after a lone `-D`) is an [`EddyError::Config`] naming the argument.
pub fn parse_dynamic_properties(
    args: impl IntoIterator<Item = String>,
) -> Result<(Configuration, Vec<String>)> {
    let mut config = Configuration::new();
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            rest.push(arg);
            rest.extend(args);
            break;
        }
        let property = if arg == "-D" {
            match args.next() {
                Some(next) => next,
                None => {
                    return Err(EddyError::Config {
                        key: "-D".to_string(),
                        value: String::new(),
                        reason: "-D must be followed by key=value".to_string(),
                    })
                }
            }
        } else if let Some(property) = arg.strip_prefix("-D") {
            property.to_string()
        } else {
            rest.push(arg);
            continue;
        };
        match property.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                config.set(key.trim(), value);
            }
            _ => {
                return Err(EddyError::Config {
                    key: "-D".to_string(),
                    value: property,
                    reason: "expected -Dkey=value or -D key=value".to_string(),
                })
            }
        }
    }
    Ok((config, rest))
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(value) => value.into_string().map(Some).map_err(|value| EddyError::Config {
            key: name.to_string(),
            value: value.to_string_lossy().into_owned(),
            reason: "the environment variable is not valid UTF-8".to_string(),
        }),
    }
}

fn read_yaml_file(path: &Path, not_found_hint: Option<&str>) -> Result<Configuration> {
    let file_error = |reason: String| EddyError::ConfigFile { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| match (e.kind(), not_found_hint) {
        (std::io::ErrorKind::NotFound, Some(hint)) => file_error(format!("file not found ({hint})")),
        (std::io::ErrorKind::NotFound, None) => file_error("file not found".to_string()),
        _ => file_error(format!("cannot read the file: {e}")),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        file_error(format!("the file is not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
    })?;
    Configuration::from_yaml_str(&text, path)
}

// ---------------------------------------------------------------------------------------------
// Options and values
// ---------------------------------------------------------------------------------------------

/// A validator for an option's values: `Err(reason)` rejects the value.
pub type Validator<T> = fn(&T) -> std::result::Result<(), String>;

/// A typed configuration option: its key, its default, what it means and which values it
/// accepts. Built in `const` context, so options can be `pub const`:
///
/// ```
/// use eddy_core::config::ConfigOption;
///
/// pub const RETRIES: ConfigOption<u32> =
///     ConfigOption::new("my-connector.retries", 3, "How often to retry a failed request.");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ConfigOption<T> {
    /// The configuration key, e.g. `parallelism.default`.
    pub key: &'static str,
    /// The value used when the key is absent, if any.
    pub default: Option<T>,
    /// What the option means, for documentation and help output.
    pub description: &'static str,
    /// Checks a parsed value; `Err(reason)` rejects it.
    pub validate: Option<Validator<T>>,
}

impl<T> ConfigOption<T> {
    /// An option with a default.
    pub const fn new(key: &'static str, default: T, description: &'static str) -> Self {
        ConfigOption { key, default: Some(default), description, validate: None }
    }

    /// An option without a default: [`Configuration::get`] fails when the key is absent, so
    /// read it with [`Configuration::get_optional`].
    pub const fn without_default(key: &'static str, description: &'static str) -> Self {
        ConfigOption { key, default: None, description, validate: None }
    }

    /// The same option, with `validate` checking every value read.
    pub const fn with_validator(mut self, validate: Validator<T>) -> Self {
        self.validate = Some(validate);
        self
    }

    /// Whether the option has a default.
    pub const fn has_default(&self) -> bool {
        self.default.is_some()
    }
}

impl<T: ConfigValue> ConfigOption<T> {
    /// Runs the option's validator on `value`, as reading it from a configuration would:
    /// [`EddyError::Config`] naming the key and the value when it is rejected.
    pub fn check(&self, value: &T) -> Result<()> {
        match self.validate {
            Some(validate) => validate(value).map_err(|reason| EddyError::Config {
                key: self.key.to_string(),
                value: value.to_value(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// A type a configuration value can be read as and written from.
pub trait ConfigValue: Sized {
    /// Parses the text of a value; `Err` holds a reason for the user (the caller adds the key
    /// and the text).
    fn parse_value(s: &str) -> std::result::Result<Self, String>;

    /// The text for this value, such that `parse_value(&v.to_value())` gives `v` back.
    fn to_value(&self) -> String;
}

fn int_error(
    e: &ParseIntError,
    s: &str,
    signed: bool,
    min: &dyn fmt::Display,
    max: &dyn fmt::Display,
) -> String {
    let what = if signed { "an integer" } else { "a non-negative integer" };
    match e.kind() {
        IntErrorKind::Empty => format!("expected {what}, found nothing"),
        IntErrorKind::PosOverflow => format!("too large (the maximum is {max})"),
        IntErrorKind::NegOverflow => format!("too small (the minimum is {min})"),
        IntErrorKind::InvalidDigit if !signed && s.starts_with('-') => "must not be negative".to_string(),
        _ => format!("expected {what}, found {s:?}"),
    }
}

macro_rules! int_config_value {
    ($($t:ty => $signed:expr),* $(,)?) => {$(
        impl ConfigValue for $t {
            fn parse_value(s: &str) -> std::result::Result<Self, String> {
                let s = s.trim();
                s.parse::<$t>()
                    .map_err(|e| int_error(&e, s, $signed, &<$t>::MIN, &<$t>::MAX))
            }

            fn to_value(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

int_config_value!(usize => false, u32 => false, u64 => false, i32 => true, i64 => true);

impl ConfigValue for bool {
    /// `true` or `false`, in any case.
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if s.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(format!("expected true or false, found {s:?}"))
        }
    }

    fn to_value(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for f64 {
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        s.parse::<f64>().map_err(|_| format!("expected a number, found {s:?}"))
    }

    fn to_value(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for String {
    /// The text as it is (not trimmed).
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        Ok(s.to_string())
    }

    fn to_value(&self) -> String {
        self.clone()
    }
}

/// Time units of Flink's duration syntax, as (names, nanoseconds per unit), largest first.
/// The first name is the one [`ConfigValue::to_value`] writes.
const DURATION_UNITS: &[(&[&str], u128)] = &[
    (&["d", "day", "days"], 86_400_000_000_000),
    (&["h", "hour", "hours"], 3_600_000_000_000),
    (&["min", "m", "minute", "minutes"], 60_000_000_000),
    (&["s", "sec", "secs", "second", "seconds"], 1_000_000_000),
    (&["ms", "milli", "millis", "millisecond", "milliseconds"], 1_000_000),
    (&["us", "µs", "μs", "micro", "micros", "microsecond", "microseconds"], 1_000),
    (&["ns", "nano", "nanos", "nanosecond", "nanoseconds"], 1),
];

impl ConfigValue for Duration {
    /// Flink's syntax: a non-negative whole number, optional whitespace, and an optional unit
    /// (`ns`, `us`/`µs`, `ms`, `s`, `min`/`m`, `h`, `d`, or their long forms such as `millis`,
    /// `seconds`, `minute`, `hours`, `days`; any case). A plain number means milliseconds.
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = (&s[..digits_end], s[digits_end..].trim());
        if number.is_empty() {
            return Err(if s.starts_with('-') {
                "a duration must not be negative".to_string()
            } else {
                "expected a duration: a number with an optional unit, such as '100 ms', '5 s' or \
                 '1 min' (a plain number means milliseconds)"
                    .to_string()
            });
        }
        if unit.starts_with('.') || unit.starts_with(',') {
            return Err("fractional durations are not supported; use a smaller unit (e.g. \
                        '1500 ms' instead of '1.5 s')"
                .to_string());
        }
        let too_large = || format!("the duration {s:?} is too large");
        let count: u128 = number.parse().map_err(|_| too_large())?;
        let per_unit = if unit.is_empty() {
            1_000_000
        } else {
            let lower = unit.to_lowercase();
            DURATION_UNITS
                .iter()
                .find(|(names, _)| names.contains(&lower.as_str()))
                .map(|&(_, nanos)| nanos)
                .ok_or_else(|| format!("unknown time unit {unit:?} (use ns, us, ms, s, min, h or d)"))?
        };
        let nanos = count.checked_mul(per_unit).ok_or_else(too_large)?;
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
        Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
    }

    /// The largest unit that represents the duration exactly, e.g. `200 ms`, `1 min`, `2 h`;
    /// zero is `0 ms`.
    fn to_value(&self) -> String {
        let nanos = self.as_nanos();
        if nanos == 0 {
            return "0 ms".to_string();
        }
        let (names, per_unit) = DURATION_UNITS
            .iter()
            .find(|(_, per_unit)| nanos / per_unit * per_unit == nanos)
            .copied()
            .unwrap_or((&["ns"], 1));
        format!("{} {}", nanos / per_unit, names[0])
    }
}

/// How a job runs: as an unbounded stream, as a bounded batch, or picked from its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RuntimeMode {
    /// Continuous, incremental processing; works for bounded and unbounded sources.
    #[default]
    Streaming,
    /// Processing for bounded input only, which lets the engine schedule stage by stage.
    Batch,
    /// Batch when every source is bounded, streaming otherwise.
    Automatic,
}

impl RuntimeMode {
    /// The configuration text: `STREAMING`, `BATCH` or `AUTOMATIC`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuntimeMode::Streaming => "STREAMING",
            RuntimeMode::Batch => "BATCH",
            RuntimeMode::Automatic => "AUTOMATIC",
        }
    }
}

impl FromStr for RuntimeMode {
    type Err = String;

    /// `STREAMING`, `BATCH` or `AUTOMATIC`, in any case.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        [RuntimeMode::Streaming, RuntimeMode::Batch, RuntimeMode::Automatic]
            .into_iter()
            .find(|mode| s.eq_ignore_ascii_case(mode.as_str()))
            .ok_or_else(|| format!("expected STREAMING, BATCH or AUTOMATIC, found {s:?}"))
    }
}

impl fmt::Display for RuntimeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ConfigValue for RuntimeMode {
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        s.parse()
    }

    fn to_value(&self) -> String {
        self.as_str().to_string()
    }
}

/// What a checkpoint guarantees (Flink's `CheckpointingMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CheckpointingMode {
    /// Tasks align the barriers of their input channels: state reflects every record before
    /// the checkpoint and none after it, so a restore processes each record once.
    #[default]
    ExactlyOnce,
    /// Tasks do not wait for barriers: state may reflect records after the checkpoint, which
    /// a restore then processes again.
    AtLeastOnce,
}

impl CheckpointingMode {
    /// The configuration text: `EXACTLY_ONCE` or `AT_LEAST_ONCE`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckpointingMode::ExactlyOnce => "EXACTLY_ONCE",
            CheckpointingMode::AtLeastOnce => "AT_LEAST_ONCE",
        }
    }
}

impl fmt::Display for CheckpointingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What becomes of a job's retained checkpoints when the job ends (Flink's
/// `ExternalizedCheckpointRetention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CheckpointRetention {
    /// Deleted whenever the job ends: finished, cancelled or failed (Flink's default).
    #[default]
    NoExternalizedCheckpoints,
    /// Kept when the job fails, deleted when it finishes or is cancelled.
    DeleteOnCancellation,
    /// Always kept, for the user to resume from or delete.
    RetainOnCancellation,
}

impl CheckpointRetention {
    const ALL: [CheckpointRetention; 3] = [
        CheckpointRetention::NoExternalizedCheckpoints,
        CheckpointRetention::DeleteOnCancellation,
        CheckpointRetention::RetainOnCancellation,
    ];

    /// Flink's name: `NO_EXTERNALIZED_CHECKPOINTS`, `DELETE_ON_CANCELLATION` or
    /// `RETAIN_ON_CANCELLATION`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckpointRetention::NoExternalizedCheckpoints => "NO_EXTERNALIZED_CHECKPOINTS",
            CheckpointRetention::DeleteOnCancellation => "DELETE_ON_CANCELLATION",
            CheckpointRetention::RetainOnCancellation => "RETAIN_ON_CANCELLATION",
        }
    }

    /// Whether a job that ended failed (`failed`) or otherwise (finished, cancelled) keeps its
    /// checkpoints.
    pub fn keeps(self, failed: bool) -> bool {
        match self {
            CheckpointRetention::NoExternalizedCheckpoints => false,
            CheckpointRetention::DeleteOnCancellation => failed,
            CheckpointRetention::RetainOnCancellation => true,
        }
    }
}

impl ConfigValue for CheckpointRetention {
    /// One of Flink's names, in any case, with `-` or `_`.
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        let normalized = s.trim().replace('-', "_");
        CheckpointRetention::ALL.into_iter().find(|r| normalized.eq_ignore_ascii_case(r.as_str())).ok_or_else(
            || {
                format!(
                    "expected NO_EXTERNALIZED_CHECKPOINTS, DELETE_ON_CANCELLATION or RETAIN_ON_CANCELLATION, \
                     found {:?}",
                    s.trim()
                )
            },
        )
    }

    fn to_value(&self) -> String {
        self.as_str().to_string()
    }
}

impl ConfigValue for CheckpointingMode {
    /// `EXACTLY_ONCE` or `AT_LEAST_ONCE`, in any case, with `-` or `_`.
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        let normalized = s.trim().replace('-', "_");
        [CheckpointingMode::ExactlyOnce, CheckpointingMode::AtLeastOnce]
            .into_iter()
            .find(|mode| normalized.eq_ignore_ascii_case(mode.as_str()))
            .ok_or_else(|| format!("expected EXACTLY_ONCE or AT_LEAST_ONCE, found {:?}", s.trim()))
    }

    fn to_value(&self) -> String {
        self.as_str().to_string()
    }
}

/// Where keyed state lives (`state.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StateBackendKind {
    /// In the task's memory, as typed hash maps (Flink's `HashMapStateBackend`).
    #[default]
    HashMap,
    /// In an embedded LSM tree on local disk ([fjall](https://docs.rs/fjall)), for state larger
    /// than memory: Eddy's counterpart of Flink's RocksDB backend.
    Fjall,
}

impl StateBackendKind {
    /// The configuration text: `hashmap` or `fjall`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StateBackendKind::HashMap => "hashmap",
            StateBackendKind::Fjall => "fjall",
        }
    }
}

impl fmt::Display for StateBackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ConfigValue for StateBackendKind {
    /// `hashmap` or `fjall`, in any case. `rocksdb` is refused with a pointer to `fjall`.
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("hashmap") {
            Ok(StateBackendKind::HashMap)
        } else if s.eq_ignore_ascii_case("fjall") {
            Ok(StateBackendKind::Fjall)
        } else if s.eq_ignore_ascii_case("rocksdb") {
            Err("Eddy has no RocksDB backend: its embedded LSM state backend is 'fjall' (state larger \
                 than memory, incremental checkpoints); use state.backend: fjall"
                .to_string())
        } else {
            Err(format!("expected hashmap or fjall, found {s:?}"))
        }
    }

    fn to_value(&self) -> String {
        self.as_str().to_string()
    }
}

/// An amount of memory in bytes, written as Flink's `MemorySize`: a whole number and an optional
/// unit, `b`/`bytes`, `k`/`kb`/`kibibytes`, `m`/`mb`/`mebibytes`, `g`/`gb`/`gibibytes` or
/// `t`/`tb`/`tebibytes` (any case, powers of 1024). A plain number means bytes.
///
/// ```
/// use eddy_core::config::{ConfigValue, MemorySize};
///
/// assert_eq!(MemorySize::parse_value("64 mb").unwrap(), MemorySize::from_mebibytes(64));
/// assert_eq!(MemorySize::parse_value("1536").unwrap().bytes(), 1536);
/// assert_eq!(MemorySize::from_mebibytes(8).to_value(), "8 mb");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemorySize(u64);

/// Memory units, as (names, bytes per unit), largest first; the first name is written back.
const MEMORY_UNITS: &[(&[&str], u64)] = &[
    (&["tb", "t", "tebibytes"], 1 << 40),
    (&["gb", "g", "gibibytes"], 1 << 30),
    (&["mb", "m", "mebibytes"], 1 << 20),
    (&["kb", "k", "kibibytes"], 1 << 10),
    (&["b", "bytes"], 1),
];

impl MemorySize {
    pub const fn from_bytes(bytes: u64) -> Self {
        MemorySize(bytes)
    }

    pub const fn from_mebibytes(mebibytes: u64) -> Self {
        MemorySize(mebibytes << 20)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl ConfigValue for MemorySize {
    fn parse_value(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = (&s[..digits_end], s[digits_end..].trim());
        if number.is_empty() {
            return Err(format!(
                "expected a memory size: a whole number with an optional unit, such as '64 mb' or \
                 '1 gb' (a plain number means bytes), found {s:?}"
            ));
        }
        let too_large = || format!("the memory size {s:?} is too large");
        let count: u64 = number.parse().map_err(|_| too_large())?;
        let per_unit = if unit.is_empty() {
            1
        } else {
            let lower = unit.to_lowercase();
            MEMORY_UNITS
                .iter()
                .find(|(names, _)| names.contains(&lower.as_str()))
                .map(|&(_, bytes)| bytes)
                .ok_or_else(|| format!("unknown memory unit {unit:?} (use b, kb, mb, gb or tb)"))?
        };
        count.checked_mul(per_unit).map(MemorySize).ok_or_else(too_large)
    }

    /// The largest unit that represents the size exactly, e.g. `64 mb`; zero is `0 b`.
    fn to_value(&self) -> String {
        let (names, per_unit) = MEMORY_UNITS
            .iter()
            .find(|(_, per_unit)| self.0 != 0 && self.0 / per_unit * per_unit == self.0)
            .copied()
            .unwrap_or((&["b"], 1));
        format!("{} {}", self.0 / per_unit, names[0])
    }
}

/// The keyed-state backend a job's operators use: `state.backend` and its options, plus where
/// incremental snapshots put their files (set by the runtime for each job).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateBackendConfig {
    pub kind: StateBackendKind,
    /// `state.backend.incremental`.
    pub incremental: bool,
    /// `state.backend.fjall.localdir`; `None`: the system's temporary directory.
    pub local_dir: Option<PathBuf>,
    /// `state.backend.fjall.memory`.
    pub memory: Option<MemorySize>,
    /// `state.checkpoints.dir` and the job's id, when checkpoints go to a directory: incremental
    /// snapshots write their files under `<dir>/<job-id>/shared/`.
    pub checkpoints: Option<(PathBuf, String)>,
}

impl StateBackendConfig {
    /// The settings `config` asks for; a bad value is an [`EddyError::Config`] naming its key.
    /// The checkpoint directory and job id are left for the runtime to fill in.
    pub fn from_configuration(config: &Configuration) -> Result<Self> {
        Ok(StateBackendConfig {
            kind: config.get(&options::STATE_BACKEND)?,
            incremental: config.get(&options::STATE_BACKEND_INCREMENTAL)?,
            local_dir: config.get_optional(&options::STATE_BACKEND_FJALL_LOCALDIR)?.map(PathBuf::from),
            memory: Some(config.get(&options::STATE_BACKEND_FJALL_MEMORY)?),
            checkpoints: None,
        })
    }

    /// The memory budget of one operator subtask's fjall backend.
    pub fn memory_budget(&self) -> MemorySize {
        self.memory.unwrap_or(options::STATE_BACKEND_FJALL_MEMORY_DEFAULT)
    }
}

// ---------------------------------------------------------------------------------------------
// Well-known options
// ---------------------------------------------------------------------------------------------

/// The options the engine reads, with Flink's key names and defaults where Flink has them.
pub mod options {
    use std::time::Duration;

    use super::{
        CheckpointRetention, CheckpointingMode, ConfigOption, MemorySize, RuntimeMode, StateBackendKind,
    };
    use crate::keygroup::UPPER_BOUND_MAX_PARALLELISM;

    /// Rejects 0.
    pub fn at_least_one(value: &usize) -> Result<(), String> {
        if *value >= 1 {
            Ok(())
        } else {
            Err("must be at least 1".to_string())
        }
    }

    /// Accepts 1 to 32768 (Flink's upper bound for max parallelism).
    pub fn valid_max_parallelism(value: &usize) -> Result<(), String> {
        if (1..=UPPER_BOUND_MAX_PARALLELISM).contains(value) {
            Ok(())
        } else {
            Err(format!("must be between 1 and {UPPER_BOUND_MAX_PARALLELISM}"))
        }
    }

    /// `parallelism.default`: the parallelism of operators that do not set their own.
    ///
    /// No fixed default: when it is unset, the local environment uses the number of CPU cores
    /// (read it with [`get_optional`](super::Configuration::get_optional)). At least 1.
    pub const PARALLELISM_DEFAULT: ConfigOption<usize> = ConfigOption::without_default(
        "parallelism.default",
        "The parallelism of operators that do not set their own. When unset, the local \
         environment uses the number of CPU cores.",
    )
    .with_validator(at_least_one);

    /// `taskmanager.numberOfTaskSlots`: how many parallel subtask slots a task manager
    /// offers. Default 1, at least 1.
    pub const TASK_SLOTS: ConfigOption<usize> = ConfigOption::new(
        "taskmanager.numberOfTaskSlots",
        1,
        "The number of parallel subtask slots a task manager offers.",
    )
    .with_validator(at_least_one);

    /// `execution.runtime-mode`: `STREAMING` (default), `BATCH` or `AUTOMATIC`.
    pub const RUNTIME_MODE: ConfigOption<RuntimeMode> = ConfigOption::new(
        "execution.runtime-mode",
        RuntimeMode::Streaming,
        "How jobs run: STREAMING, BATCH or AUTOMATIC (batch when all sources are bounded).",
    );

    /// `execution.buffer-timeout`: how long a partly filled output batch may wait before it
    /// is sent. Default 100 ms; 0 flushes after every record batch an operator emits.
    pub const BUFFER_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
        "execution.buffer-timeout",
        Duration::from_millis(100),
        "How long a partly filled output batch may wait before it is sent; 0 flushes after \
         every record batch.",
    );

    /// `pipeline.max-parallelism`: the number of key groups, i.e. the largest parallelism a
    /// keyed operator can be rescaled to. No default: when unset, Flink's formula applies
    /// ([`default_max_parallelism`](crate::keygroup::default_max_parallelism)). Between 1 and
    /// 32768.
    pub const MAX_PARALLELISM: ConfigOption<usize> = ConfigOption::without_default(
        "pipeline.max-parallelism",
        "The number of key groups (the largest parallelism keyed state can be rescaled to). \
         When unset, derived from the parallelism as in Flink.",
    )
    .with_validator(valid_max_parallelism);

    /// `pipeline.auto-watermark-interval`: how often periodic watermark generators emit.
    /// Default 200 ms.
    pub const AUTO_WATERMARK_INTERVAL: ConfigOption<Duration> = ConfigOption::new(
        "pipeline.auto-watermark-interval",
        Duration::from_millis(200),
        "How often periodic watermark generators emit a watermark.",
    );

    /// `execution.batch-size`: records per network batch. An Eddy key (Flink sizes network
    /// buffers in bytes instead). Default 1024, at least 1.
    pub const BATCH_SIZE: ConfigOption<usize> = ConfigOption::new(
        "execution.batch-size",
        1024,
        "The number of records per network batch (an Eddy option).",
    )
    .with_validator(at_least_one);

    /// `execution.channel-capacity`: batches in flight per channel before the sender is
    /// back-pressured. An Eddy key. Default 4, at least 1.
    pub const CHANNEL_CAPACITY: ConfigOption<usize> = ConfigOption::new(
        "execution.channel-capacity",
        4,
        "The number of batches in flight per channel before the sender waits (an Eddy \
         option).",
    )
    .with_validator(at_least_one);

    /// `execution.remote-channel-capacity`: batches in flight per channel that crosses
    /// processes, i.e. the credit a consumer grants its remote producer. Larger than
    /// [`CHANNEL_CAPACITY`] because a credit's round trip crosses two processes and a TCP
    /// connection: with 4 the keyed exchange between two TaskManagers ran at half the speed it
    /// reaches with 16. Costs up to `capacity × batch` of memory per remote channel. An Eddy
    /// key; default 16, at least 1.
    pub const REMOTE_CHANNEL_CAPACITY: ConfigOption<usize> = ConfigOption::new(
        "execution.remote-channel-capacity",
        16,
        "The number of batches in flight per channel between processes before the sender waits \
         for credit (an Eddy option).",
    )
    .with_validator(at_least_one);

    /// `execution.network-exchange`: run every non-chained exchange of the local mini-cluster
    /// over a loopback TCP data connection (the data plane of a cluster) instead of an
    /// in-process channel. An Eddy key, for validating the data plane. Default `false`.
    pub const NETWORK_EXCHANGE: ConfigOption<bool> = ConfigOption::new(
        "execution.network-exchange",
        false,
        "Send every non-chained exchange over a loopback TCP data connection, as between \
         TaskManagers, instead of an in-process channel (an Eddy option).",
    );

    /// Rejects a zero duration.
    pub fn positive_duration(value: &Duration) -> Result<(), String> {
        if value.is_zero() {
            Err("must be greater than 0".to_string())
        } else {
            Ok(())
        }
    }

    /// Accepts finite numbers of at least 1.
    pub fn multiplier_at_least_one(value: &f64) -> Result<(), String> {
        if value.is_finite() && *value >= 1.0 {
            Ok(())
        } else {
            Err("must be a number of at least 1.0".to_string())
        }
    }

    /// Accepts numbers from 0 to 1.
    pub fn between_zero_and_one(value: &f64) -> Result<(), String> {
        if (0.0..=1.0).contains(value) {
            Ok(())
        } else {
            Err("must be a number between 0.0 and 1.0".to_string())
        }
    }

    /// `restart-strategy.type`: `none` (also `off`, `disable`), `fixed-delay`,
    /// `exponential-delay` or `failure-rate`. No default: unset means `none` while checkpointing
    /// is off and `exponential-delay` when it is on (see `eddy_runtime::restart::RestartStrategy`).
    pub const RESTART_STRATEGY_TYPE: ConfigOption<String> = ConfigOption::without_default(
        "restart-strategy.type",
        "How a failed job is restarted: none (off, disable), fixed-delay, exponential-delay or \
         failure-rate. Unset means none, or exponential-delay when checkpointing is on.",
    );

    /// `restart-strategy.fixed-delay.attempts`: restarts before the job fails for good. Default 1.
    pub const FIXED_DELAY_ATTEMPTS: ConfigOption<usize> = ConfigOption::new(
        "restart-strategy.fixed-delay.attempts",
        1,
        "The number of restarts the fixed-delay strategy makes before the job fails.",
    );

    /// `restart-strategy.fixed-delay.delay`: the wait before each restart. Default 1 s.
    pub const FIXED_DELAY_DELAY: ConfigOption<Duration> = ConfigOption::new(
        "restart-strategy.fixed-delay.delay",
        Duration::from_secs(1),
        "How long the fixed-delay strategy waits before a restart.",
    );

    /// `restart-strategy.exponential-delay.initial-backoff`: the first wait. Default 1 s.
    pub const EXPONENTIAL_DELAY_INITIAL_BACKOFF: ConfigOption<Duration> = ConfigOption::new(
        "restart-strategy.exponential-delay.initial-backoff",
        Duration::from_secs(1),
        "The wait before the first restart of the exponential-delay strategy.",
    )
    .with_validator(positive_duration);

    /// `restart-strategy.exponential-delay.max-backoff`: the longest wait. Default 5 min.
    pub const EXPONENTIAL_DELAY_MAX_BACKOFF: ConfigOption<Duration> = ConfigOption::new(
        "restart-strategy.exponential-delay.max-backoff",
        Duration::from_secs(300),
        "The longest wait of the exponential-delay strategy.",
    )
    .with_validator(positive_duration);

    /// `restart-strategy.exponential-delay.backoff-multiplier`: how the wait grows after each
    /// failure. Default 2.0, at least 1.0.
    pub const EXPONENTIAL_DELAY_BACKOFF_MULTIPLIER: ConfigOption<f64> = ConfigOption::new(
        "restart-strategy.exponential-delay.backoff-multiplier",
        2.0,
        "The factor the exponential-delay wait grows by after each failure.",
    )
    .with_validator(multiplier_at_least_one);

    /// `restart-strategy.exponential-delay.reset-backoff-threshold`: after running this long
    /// without a failure, the wait goes back to the initial backoff. Default 1 h.
    pub const EXPONENTIAL_DELAY_RESET_BACKOFF_THRESHOLD: ConfigOption<Duration> = ConfigOption::new(
        "restart-strategy.exponential-delay.reset-backoff-threshold",
        Duration::from_secs(3600),
        "How long a job must run without failing for the exponential-delay wait to reset.",
    )
    .with_validator(positive_duration);

    /// `restart-strategy.exponential-delay.jitter-factor`: the random share added to or taken
    /// from each wait. Default 0.1, between 0 and 1.
    pub const EXPONENTIAL_DELAY_JITTER_FACTOR: ConfigOption<f64> = ConfigOption::new(
        "restart-strategy.exponential-delay.jitter-factor",
        0.1,
        "The share of the exponential-delay wait that is randomly added or taken away.",
    )
    .with_validator(between_zero_and_one);

    /// `restart-strategy.exponential-delay.attempts-before-reset-backoff`: restarts allowed
    /// until the wait resets. No default: unset is unlimited. At least 1.
    pub const EXPONENTIAL_DELAY_ATTEMPTS_BEFORE_RESET_BACKOFF: ConfigOption<usize> =
        ConfigOption::without_default(
            "restart-strategy.exponential-delay.attempts-before-reset-backoff",
            "The restarts the exponential-delay strategy allows before the wait resets; unset \
             is unlimited.",
        )
        .with_validator(at_least_one);

    /// `restart-strategy.failure-rate.max-failures-per-interval`. Default 1, at least 1.
    pub const FAILURE_RATE_MAX_FAILURES_PER_INTERVAL: ConfigOption<usize> = ConfigOption::new(
        "restart-strategy.failure-rate.max-failures-per-interval",
        1,
        "The number of failures within the interval at which the failure-rate strategy gives up.",
    )
    .with_validator(at_least_one);

    /// `restart-strategy.failure-rate.failure-rate-interval`. Default 1 min.
    pub const FAILURE_RATE_INTERVAL: ConfigOption<Duration> = ConfigOption::new(
        "restart-strategy.failure-rate.failure-rate-interval",
        Duration::from_secs(60),
        "The time window the failure-rate strategy counts failures in.",
    )
    .with_validator(positive_duration);

    /// `restart-strategy.failure-rate.delay`: the wait before each restart. Default 1 s.
    pub const FAILURE_RATE_DELAY: ConfigOption<Duration> = ConfigOption::new(
        "restart-strategy.failure-rate.delay",
        Duration::from_secs(1),
        "How long the failure-rate strategy waits before a restart.",
    );

    /// Flink's smallest checkpoint interval.
    pub fn at_least_ten_ms(value: &Duration) -> Result<(), String> {
        if *value >= Duration::from_millis(10) {
            Ok(())
        } else {
            Err("must be at least 10 ms".to_string())
        }
    }

    /// `execution.checkpointing.interval`: how often the checkpoint coordinator triggers a
    /// checkpoint. No default: checkpointing is off unless it is set. At least 10 ms.
    pub const CHECKPOINTING_INTERVAL: ConfigOption<Duration> = ConfigOption::without_default(
        "execution.checkpointing.interval",
        "How often a checkpoint is triggered. Unset: checkpointing is off.",
    )
    .with_validator(at_least_ten_ms);

    /// `execution.checkpointing.mode`: `EXACTLY_ONCE` (default, barriers are aligned) or
    /// `AT_LEAST_ONCE`.
    pub const CHECKPOINTING_MODE: ConfigOption<CheckpointingMode> = ConfigOption::new(
        "execution.checkpointing.mode",
        CheckpointingMode::ExactlyOnce,
        "EXACTLY_ONCE (tasks align checkpoint barriers) or AT_LEAST_ONCE (they do not).",
    );

    /// `execution.checkpointing.timeout`: a checkpoint not complete after this long is
    /// aborted. Default 10 min.
    pub const CHECKPOINTING_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
        "execution.checkpointing.timeout",
        Duration::from_secs(600),
        "How long a checkpoint may take before it is aborted.",
    )
    .with_validator(positive_duration);

    /// `execution.checkpointing.min-pause`: the least time between the end of one checkpoint
    /// and the start of the next. Default 0; more than 0 allows one checkpoint at a time.
    pub const CHECKPOINTING_MIN_PAUSE: ConfigOption<Duration> = ConfigOption::new(
        "execution.checkpointing.min-pause",
        Duration::ZERO,
        "The least time between the end of a checkpoint and the start of the next.",
    );

    /// `execution.checkpointing.max-concurrent-checkpoints`: checkpoints in progress at once.
    /// Default 1, at least 1.
    pub const CHECKPOINTING_MAX_CONCURRENT: ConfigOption<usize> = ConfigOption::new(
        "execution.checkpointing.max-concurrent-checkpoints",
        1,
        "The number of checkpoints that may be in progress at the same time.",
    )
    .with_validator(at_least_one);

    /// `execution.checkpointing.tolerable-failed-checkpoints`: consecutive checkpoint failures
    /// (timeouts, declines, storage errors) the job tolerates before it fails. Default 0.
    pub const CHECKPOINTING_TOLERABLE_FAILURES: ConfigOption<usize> = ConfigOption::new(
        "execution.checkpointing.tolerable-failed-checkpoints",
        0,
        "The number of consecutive failed checkpoints tolerated before the job fails.",
    );

    /// `execution.checkpointing.externalized-checkpoint-retention`: what becomes of the
    /// checkpoints in `state.checkpoints.dir` when the job ends. Default (as in Flink)
    /// `NO_EXTERNALIZED_CHECKPOINTS`: they are deleted whether it finished, was cancelled or
    /// failed; `DELETE_ON_CANCELLATION` keeps them when it failed; `RETAIN_ON_CANCELLATION`
    /// always keeps them.
    pub const CHECKPOINTING_RETENTION: ConfigOption<CheckpointRetention> = ConfigOption::new(
        "execution.checkpointing.externalized-checkpoint-retention",
        CheckpointRetention::NoExternalizedCheckpoints,
        "What becomes of a job's checkpoints when it ends: NO_EXTERNALIZED_CHECKPOINTS, \
         DELETE_ON_CANCELLATION or RETAIN_ON_CANCELLATION.",
    );

    /// `execution.checkpointing.unaligned.enabled`: EXACTLY_ONCE checkpoints do not align
    /// barriers; a task snapshots at its first barrier and stores the records still in flight
    /// on its other inputs with the checkpoint. Savepoints stay aligned. Default false.
    pub const CHECKPOINTING_UNALIGNED: ConfigOption<bool> = ConfigOption::new(
        "execution.checkpointing.unaligned.enabled",
        false,
        "Take unaligned checkpoints: snapshot at the first barrier and store in-flight records.",
    );

    /// `execution.checkpointing.aligned-checkpoint-timeout`: with unaligned checkpoints on, a
    /// checkpoint starts aligned and turns unaligned at a task whose alignment takes longer than
    /// this. Default 0: unaligned from the first barrier.
    pub const CHECKPOINTING_ALIGNED_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
        "execution.checkpointing.aligned-checkpoint-timeout",
        Duration::ZERO,
        "How long a task aligns barriers before an unaligned checkpoint turns unaligned.",
    );

    /// `state.checkpoints.dir`: the directory completed checkpoints are written to, under
    /// `<dir>/<job-id>/chk-<n>/`. No default: without it checkpoints are kept in the memory of
    /// the job master (Flink's JobManager-heap storage) and do not survive the process.
    pub const CHECKPOINTS_DIRECTORY: ConfigOption<String> = ConfigOption::without_default(
        "state.checkpoints.dir",
        "The directory checkpoints are written to. Unset: checkpoints are kept in memory.",
    );

    /// `state.checkpoints.num-retained`: completed checkpoints kept; older ones are deleted.
    /// Default 1, at least 1.
    pub const CHECKPOINTS_NUM_RETAINED: ConfigOption<usize> =
        ConfigOption::new("state.checkpoints.num-retained", 1, "The number of completed checkpoints kept.")
            .with_validator(at_least_one);

    /// `state.savepoints.dir`: where savepoints go when a trigger names no directory. Each
    /// savepoint is a folder `savepoint-<job id prefix>-<random>` under it, never deleted by
    /// the job.
    pub const SAVEPOINTS_DIRECTORY: ConfigOption<String> = ConfigOption::without_default(
        "state.savepoints.dir",
        "The default directory for savepoints. Unset: a savepoint trigger must name a directory.",
    );

    /// `execution.savepoint.path`: the savepoint (its folder or its `_metadata` file) or the
    /// retained checkpoint (`chk-<n>` folder) the job starts from, at any parallelism.
    pub const SAVEPOINT_PATH: ConfigOption<String> = ConfigOption::without_default(
        "execution.savepoint.path",
        "The savepoint or retained checkpoint to start the job from. Unset: the job starts empty.",
    );

    /// `execution.savepoint.ignore-unclaimed-state`: start even when the savepoint holds state
    /// of an operator the job no longer has (Flink's `--allowNonRestoredState`); that state is
    /// dropped. Default false: such state is an error naming the operator.
    pub const SAVEPOINT_IGNORE_UNCLAIMED_STATE: ConfigOption<bool> = ConfigOption::new(
        "execution.savepoint.ignore-unclaimed-state",
        false,
        "Allow restoring a savepoint whose state of removed operators is then dropped.",
    );

    /// `state.backend`: where keyed state lives. `hashmap` (default): in memory, as typed hash
    /// maps. `fjall`: in an embedded LSM tree on local disk, for state larger than memory.
    /// `rocksdb` is refused with a pointer to `fjall`.
    pub const STATE_BACKEND: ConfigOption<StateBackendKind> = ConfigOption::new(
        "state.backend",
        StateBackendKind::HashMap,
        "Where keyed state lives: hashmap (in memory) or fjall (embedded LSM tree on local disk).",
    );

    /// `state.backend.incremental`: checkpoints of the `fjall` backend write only the key groups
    /// changed since the previous checkpoint, as files under `<state.checkpoints.dir>/<job-id>/
    /// shared/`, and reference the unchanged ones. Default false. Without `state.checkpoints.dir`
    /// (or with the `hashmap` backend) checkpoints stay full, with a warning in the log.
    /// Savepoints are always full.
    pub const STATE_BACKEND_INCREMENTAL: ConfigOption<bool> = ConfigOption::new(
        "state.backend.incremental",
        false,
        "Whether fjall checkpoints write only the key groups changed since the last checkpoint.",
    );

    /// `state.backend.fjall.localdir`: where the `fjall` backend keeps its working LSM trees,
    /// one directory per operator subtask, removed when the task ends. No default: the system's
    /// temporary directory.
    pub const STATE_BACKEND_FJALL_LOCALDIR: ConfigOption<String> = ConfigOption::without_default(
        "state.backend.fjall.localdir",
        "The directory for the fjall backend's working files. Unset: the system temp directory.",
    );

    /// The default of [`STATE_BACKEND_FJALL_MEMORY`].
    pub const STATE_BACKEND_FJALL_MEMORY_DEFAULT: MemorySize = MemorySize::from_mebibytes(64);

    /// `state.backend.fjall.memory`: the memory budget of one operator subtask's `fjall`
    /// backend (its write-back cache of decoded entries, block cache and write buffers).
    /// Default `64 mb`, at least `4 mb`.
    pub const STATE_BACKEND_FJALL_MEMORY: ConfigOption<MemorySize> = ConfigOption::new(
        "state.backend.fjall.memory",
        STATE_BACKEND_FJALL_MEMORY_DEFAULT,
        "The memory budget of one operator subtask's fjall state backend, e.g. 64 mb.",
    )
    .with_validator(at_least_four_mb);

    /// Rejects memory budgets under 4 MiB (fjall needs 1 MiB of write buffer at least).
    pub fn at_least_four_mb(value: &MemorySize) -> Result<(), String> {
        if value.bytes() >= 4 << 20 {
            Ok(())
        } else {
            Err("must be at least 4 mb".to_string())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// YAML: events to a tree, the tree to flat keys
// ---------------------------------------------------------------------------------------------

fn position(mark: &Marker) -> String {
    format!("line {}, column {}", mark.line(), mark.col() + 1)
}

/// A YAML node with the raw text of its scalars (so values keep the text they were written
/// with) and where it starts.
#[derive(Clone, Debug)]
enum Node {
    Scalar { value: String, style: TScalarStyle, tag: Option<Tag>, mark: Marker },
    Seq { items: Vec<Node>, mark: Marker },
    Map { entries: Vec<(Node, Node)>, mark: Marker },
}

impl Node {
    fn mark(&self) -> Marker {
        match self {
            Node::Scalar { mark, .. } | Node::Seq { mark, .. } | Node::Map { mark, .. } => *mark,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a single value",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a map",
        }
    }

    /// YAML's null: an untagged plain `~`, `null` (any common case) or nothing, or `!!null`.
    fn is_null(&self) -> bool {
        match self {
            Node::Scalar { value, style, tag, .. } => match tag {
                Some(tag) => tag.suffix == "null",
                None => {
                    *style == TScalarStyle::Plain
                        && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL")
                }
            },
            _ => false,
        }
    }
}

enum Building {
    Seq { items: Vec<Node>, mark: Marker, anchor: usize },
    Map { entries: Vec<(Node, Node)>, key: Option<Node>, mark: Marker, anchor: usize },
}

#[derive(Default)]
struct TreeBuilder {
    documents: Vec<Node>,
    /// Where each document starts (its `---` or its first content).
    document_starts: Vec<Marker>,
    stack: Vec<Building>,
    anchors: HashMap<usize, Node>,
    error: Option<(Marker, String)>,
}

impl TreeBuilder {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Building::Seq { items, .. }) => items.push(node),
            Some(Building::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                self.finish(Node::Scalar { value, style, tag, mark }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Building::Seq { items: Vec::new(), mark, anchor })
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Building::Map { entries: Vec::new(), key: None, mark, anchor })
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Building::Seq { items, mark, anchor }) => self.finish(Node::Seq { items, mark }, anchor),
                Some(Building::Map { entries, mark, anchor, .. }) => {
                    self.finish(Node::Map { entries, mark }, anchor)
                }
                None => self.error = Some((mark, "unbalanced YAML structure".to_string())),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.finish(node, 0),
                None => self.error = Some((mark, "alias to an unknown anchor".to_string())),
            },
            Event::DocumentStart => self.document_starts.push(mark),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

type FlatEntries = BTreeMap<String, (String, Marker)>;
type FlattenError = (Marker, String);

fn flatten_map(
    prefix: &str,
    entries: &[(Node, Node)],
    out: &mut FlatEntries,
) -> std::result::Result<(), FlattenError> {
    for (key_node, value) in entries {
        let key = match key_node {
            Node::Scalar { value, .. } if !key_node.is_null() && !value.trim().is_empty() => value.trim(),
            Node::Scalar { .. } => {
                return Err((key_node.mark(), format!("empty key in map {:?}", display_prefix(prefix))))
            }
            _ => {
                return Err((
                    key_node.mark(),
                    format!(
                        "key in map {:?} is {}, only plain keys are supported",
                        display_prefix(prefix),
                        key_node.kind()
                    ),
                ))
            }
        };
        let full = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
        let text = match value {
            Node::Map { entries, .. } => {
                flatten_map(&full, entries, out)?;
                continue;
            }
            Node::Seq { items, .. } => list_to_string(&full, items)?,
            _ if value.is_null() => continue,
            Node::Scalar { value: text, .. } => text.clone(),
        };
        if let Some((_, first)) = out.get(&full) {
            return Err((
                key_node.mark(),
                format!("key '{full}' is set twice (first at {})", position(first)),
            ));
        }
        out.insert(full, (text, key_node.mark()));
    }
    Ok(())
}

fn display_prefix(prefix: &str) -> &str {
    if prefix.is_empty() {
        "<top level>"
    } else {
        prefix
    }
}

/// Flink's list convention: items joined with `;`, items holding `;` or quotes single-quoted;
/// a map item is `k1:v1,k2:v2` with the same quoting for `:` and `,`.
fn list_to_string(key: &str, items: &[Node]) -> std::result::Result<String, FlattenError> {
    let scalar = |node: &Node, what: &str| match node {
        Node::Scalar { value, .. } if !node.is_null() => Ok(value.clone()),
        Node::Scalar { .. } => Err((node.mark(), format!("{what} of the list '{key}' is null"))),
        _ => Err((
            node.mark(),
            format!("{what} of the list '{key}' is {}, which is not supported", node.kind()),
        )),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let text = match item {
            Node::Map { entries, .. } => {
                let mut parts = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let k = scalar(k, "a key in an item")?;
                    let v = scalar(v, "a value in an item")?;
                    parts.push(format!("{}:{}", quote_if(&k, &[':', ',']), quote_if(&v, &[':', ','])));
                }
                parts.join(",")
            }
            _ => scalar(item, "an item")?,
        };
        out.push(quote_if(&text, &[';']));
    }
    Ok(out.join(";"))
}

fn quote_if(text: &str, special: &[char]) -> String {
    if text.contains(|c: char| special.contains(&c) || c == '\'' || c == '"') {
        format!("'{}'", text.replace('\'', "''"))
    } else {
        text.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::options::*;
    use super::*;

    #[test]
    fn state_backend_options_parse_like_flinks() {
        let mut config = Configuration::new();
        let defaults = StateBackendConfig::from_configuration(&config).unwrap();
        assert_eq!((defaults.kind, defaults.incremental), (StateBackendKind::HashMap, false));
        assert_eq!(defaults.memory_budget(), MemorySize::from_mebibytes(64));
        config.set("state.backend", "FJALL");
        config.set("state.backend.incremental", "true");
        config.set("state.backend.fjall.memory", "1 gb");
        config.set("state.backend.fjall.localdir", "/var/eddy");
        let c = StateBackendConfig::from_configuration(&config).unwrap();
        assert_eq!((c.kind, c.incremental), (StateBackendKind::Fjall, true));
        assert_eq!(c.memory_budget().bytes(), 1 << 30);
        assert_eq!(c.local_dir, Some(PathBuf::from("/var/eddy")));
        for (text, bytes) in
            [("512", 512), ("8mb", 8 << 20), ("8 MB", 8 << 20), ("3 kb", 3072), ("2g", 2 << 30)]
        {
            assert_eq!(MemorySize::parse_value(text).unwrap().bytes(), bytes, "{text}");
        }
        for bad in ["", "mb", "-1 mb", "1.5 gb", "3 parsecs", "99999999999999999999 tb"] {
            assert!(MemorySize::parse_value(bad).is_err(), "{bad}");
        }
        assert_eq!(MemorySize::from_bytes(3072).to_value(), "3 kb");
        assert_eq!(MemorySize::from_bytes(1000).to_value(), "1000 b");
        let err = StateBackendKind::parse_value("rocksdb").unwrap_err();
        assert!(err.contains("fjall"), "{err}");
    }

    #[test]
    fn to_yaml_reads_back_to_the_same_configuration() {
        let config: Configuration = [
            ("parallelism.default", "4"),
            ("a.quote", "say \"hi\": now"),
            ("a.backslash", "C:\\dir\\x"),
            ("a.lines", "one\ntwo\tthree\r"),
            ("a.control", "bell\u{7}"),
            ("a.unicode", "größe ✓"),
            ("a.empty", ""),
            ("a.yaml-ish", "- [x]: {y} # z"),
        ]
        .into_iter()
        .collect();
        let text = config.to_yaml();
        assert_eq!(Configuration::from_yaml_str(&text, Path::new("x.yaml")).unwrap(), config, "{text}");
    }

    fn yaml(text: &str) -> Result<Configuration> {
        Configuration::from_yaml_str(text, Path::new("test.yaml"))
    }

    fn map(config: &Configuration) -> Vec<(String, String)> {
        config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn dur(s: &str) -> std::result::Result<Duration, String> {
        Duration::parse_value(s)
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!("eddy-config-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn raw_access_and_merge() {
        let mut a = Configuration::new();
        a.set("x", "1").set("y", "2");
        assert_eq!(a.get_raw("x"), Some("1"));
        assert!(a.contains("y"));
        assert_eq!(a.len(), 2);
        let mut b = Configuration::new();
        b.set("y", "20").set("z", "30");
        a.merge(&b);
        assert_eq!(
            map(&a),
            vec![("x".into(), "1".into()), ("y".into(), "20".into()), ("z".into(), "30".into()),]
        );
        assert_eq!(a.remove("x").as_deref(), Some("1"));
        assert!(!a.contains("x"));
        assert_eq!(a.to_map().len(), 2);
        let c: Configuration = [("k", "v")].into_iter().collect();
        assert_eq!(c.get_raw("k"), Some("v"));
    }

    #[test]
    fn typed_access() {
        let mut config = Configuration::new();
        assert_eq!(config.get(&TASK_SLOTS).unwrap(), 1);
        assert_eq!(config.get(&BATCH_SIZE).unwrap(), 1024);
        assert_eq!(config.get(&CHANNEL_CAPACITY).unwrap(), 4);
        assert_eq!(config.get(&RUNTIME_MODE).unwrap(), RuntimeMode::Streaming);
        assert_eq!(config.get(&BUFFER_TIMEOUT).unwrap(), Duration::from_millis(100));
        assert_eq!(config.get(&AUTO_WATERMARK_INTERVAL).unwrap(), Duration::from_millis(200));
        assert_eq!(config.get_optional(&PARALLELISM_DEFAULT).unwrap(), None);
        assert_eq!(config.get_optional(&TASK_SLOTS).unwrap(), None);
        assert_eq!(config.get_optional(&MAX_PARALLELISM).unwrap(), None);
        let err = config.get(&PARALLELISM_DEFAULT).unwrap_err().to_string();
        assert!(err.contains("parallelism.default"), "{err}");

        config.set_value(&PARALLELISM_DEFAULT, 8);
        config.set_value(&BUFFER_TIMEOUT, Duration::from_secs(60));
        config.set_value(&RUNTIME_MODE, RuntimeMode::Batch);
        assert_eq!(config.get_raw("parallelism.default"), Some("8"));
        assert_eq!(config.get_raw("execution.buffer-timeout"), Some("1 min"));
        assert_eq!(config.get_raw("execution.runtime-mode"), Some("BATCH"));
        assert_eq!(config.get(&PARALLELISM_DEFAULT).unwrap(), 8);
        assert_eq!(config.get(&BUFFER_TIMEOUT).unwrap(), Duration::from_secs(60));
        assert_eq!(config.get(&RUNTIME_MODE).unwrap(), RuntimeMode::Batch);

        config.set("execution.runtime-mode", "automatic");
        assert_eq!(config.get(&RUNTIME_MODE).unwrap(), RuntimeMode::Automatic);
        config.set("execution.runtime-mode", "sometimes");
        let err = config.get(&RUNTIME_MODE).unwrap_err().to_string();
        assert!(err.contains("execution.runtime-mode") && err.contains("sometimes"), "{err}");
    }

    #[test]
    fn bad_integer_names_key_and_value() {
        let mut config = Configuration::new();
        config.set("taskmanager.numberOfTaskSlots", "four");
        let err = config.get(&TASK_SLOTS).unwrap_err();
        assert!(matches!(err, EddyError::Config { .. }));
        let text = err.to_string();
        assert!(text.contains("taskmanager.numberOfTaskSlots"), "{text}");
        assert!(text.contains("four"), "{text}");

        assert!(usize::parse_value("-1").unwrap_err().contains("negative"));
        assert!(u32::parse_value("99999999999").unwrap_err().contains("too large"));
        assert!(i64::parse_value("").is_err());
        assert!(u64::parse_value("12abc").is_err());
        assert_eq!(i64::parse_value(" -42 ").unwrap(), -42);
        assert_eq!(u64::parse_value("7").unwrap(), 7);
    }

    #[test]
    fn booleans_and_strings() {
        assert!(bool::parse_value("TRUE").unwrap());
        assert!(bool::parse_value("True").unwrap());
        assert!(!bool::parse_value("false").unwrap());
        assert!(bool::parse_value("yes").is_err());
        assert_eq!(String::parse_value(" a b ").unwrap(), " a b ");
        assert_eq!(true.to_value(), "true");
    }

    #[test]
    fn validation() {
        let mut config = Configuration::new();
        config.set("parallelism.default", "0");
        let err = config.get_optional(&PARALLELISM_DEFAULT).unwrap_err().to_string();
        assert!(err.contains("parallelism.default") && err.contains("\"0\""), "{err}");
        assert!(err.contains("at least 1"), "{err}");
        assert!(config.get(&PARALLELISM_DEFAULT).is_err());

        config.set("pipeline.max-parallelism", "32768");
        assert_eq!(config.get_optional(&MAX_PARALLELISM).unwrap(), Some(32768));
        config.set("pipeline.max-parallelism", "32769");
        let err = config.get_optional(&MAX_PARALLELISM).unwrap_err().to_string();
        assert!(err.contains("pipeline.max-parallelism") && err.contains("32769"), "{err}");
        config.set("execution.batch-size", "0");
        assert!(config.get(&BATCH_SIZE).is_err());
        config.set("execution.channel-capacity", "0");
        assert!(config.get(&CHANNEL_CAPACITY).is_err());

        assert!(TASK_SLOTS.check(&0).is_err());
        assert!(TASK_SLOTS.check(&3).is_ok());
        assert!(BUFFER_TIMEOUT.check(&Duration::ZERO).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(dur("0").unwrap(), Duration::ZERO);
        assert_eq!(dur("100").unwrap(), Duration::from_millis(100));
        assert_eq!(dur("100 ms").unwrap(), Duration::from_millis(100));
        assert_eq!(dur("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(dur(" 100  millis ").unwrap(), Duration::from_millis(100));
        assert_eq!(dur("1 millisecond").unwrap(), Duration::from_millis(1));
        assert_eq!(dur("5 milliseconds").unwrap(), Duration::from_millis(5));
        assert_eq!(dur("3 milli").unwrap(), Duration::from_millis(3));
        assert_eq!(dur("1min").unwrap(), Duration::from_secs(60));
        assert_eq!(dur("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(dur("3 minutes").unwrap(), Duration::from_secs(180));
        assert_eq!(dur("1 minute").unwrap(), Duration::from_secs(60));
        assert_eq!(dur("2 h").unwrap(), Duration::from_secs(7200));
        assert_eq!(dur("1 hour").unwrap(), Duration::from_secs(3600));
        assert_eq!(dur("2 hours").unwrap(), Duration::from_secs(7200));
        assert_eq!(dur("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(dur("2 days").unwrap(), Duration::from_secs(172_800));
        assert_eq!(dur("1 day").unwrap(), Duration::from_secs(86_400));
        for s in ["10s", "10 sec", "10 secs", "10 second", "10 seconds", "10 S", "10 SECONDS"] {
            assert_eq!(dur(s).unwrap(), Duration::from_secs(10), "{s}");
        }
        for s in ["7us", "7 µs", "7 micro", "7 micros", "7 microsecond", "7 microseconds"] {
            assert_eq!(dur(s).unwrap(), Duration::from_micros(7), "{s}");
        }
        for s in ["9ns", "9 nano", "9 nanos", "9 nanosecond", "9 nanoseconds"] {
            assert_eq!(dur(s).unwrap(), Duration::from_nanos(9), "{s}");
        }
        assert_eq!(dur("100 MS").unwrap(), Duration::from_millis(100));

        assert!(dur("10 fortnights").unwrap_err().contains("unknown time unit"));
        assert!(dur("10 mss").is_err());
        assert!(dur("ms").is_err());
        assert!(dur("").is_err());
        assert!(dur("-5 s").unwrap_err().contains("negative"));
        assert!(dur("1.5 s").unwrap_err().contains("fractional"));
        assert_eq!(dur("99999999999999999999 ns").unwrap(), Duration::new(99_999_999_999, 999_999_999));
        assert!(dur("99999999999999999999999999999999 ms").unwrap_err().contains("too large"));
        assert!(dur("999999999999999999999999999999999999999999 ms").unwrap_err().contains("too large"));
        assert!(dur("18446744073709551615 d").unwrap_err().contains("too large"));

        let mut config = Configuration::new();
        config.set("execution.buffer-timeout", "10 parsecs");
        let err = config.get(&BUFFER_TIMEOUT).unwrap_err().to_string();
        assert!(err.contains("execution.buffer-timeout") && err.contains("10 parsecs"), "{err}");

        for d in [
            Duration::ZERO,
            Duration::from_millis(200),
            Duration::from_secs(60),
            Duration::from_secs(7200),
            Duration::from_secs(86_400 * 3),
            Duration::from_micros(1500),
            Duration::from_nanos(1),
            Duration::MAX,
        ] {
            assert_eq!(dur(&d.to_value()).unwrap(), d, "{}", d.to_value());
        }
        assert_eq!(Duration::from_millis(200).to_value(), "200 ms");
        assert_eq!(Duration::from_secs(7200).to_value(), "2 h");
        assert_eq!(Duration::from_secs(90).to_value(), "90 s");
    }

    #[test]
    fn runtime_mode() {
        assert_eq!(RuntimeMode::default(), RuntimeMode::Streaming);
        assert_eq!("batch".parse::<RuntimeMode>().unwrap(), RuntimeMode::Batch);
        assert_eq!("STREAMING".parse::<RuntimeMode>().unwrap(), RuntimeMode::Streaming);
        assert_eq!("Automatic".parse::<RuntimeMode>().unwrap(), RuntimeMode::Automatic);
        assert!("stream".parse::<RuntimeMode>().is_err());
        assert_eq!(RuntimeMode::Automatic.to_string(), "AUTOMATIC");
        assert_eq!(RuntimeMode::Batch.to_value(), "BATCH");
    }

    #[test]
    fn checkpointing_options_have_flinks_names_and_defaults() {
        let config = Configuration::new();
        assert_eq!(config.get_optional(&CHECKPOINTING_INTERVAL).unwrap(), None);
        assert_eq!(config.get(&CHECKPOINTING_MODE).unwrap(), CheckpointingMode::ExactlyOnce);
        assert_eq!(config.get(&CHECKPOINTING_TIMEOUT).unwrap(), Duration::from_secs(600));
        assert_eq!(config.get(&CHECKPOINTING_MIN_PAUSE).unwrap(), Duration::ZERO);
        assert_eq!(config.get(&CHECKPOINTING_MAX_CONCURRENT).unwrap(), 1);
        assert_eq!(config.get(&CHECKPOINTING_TOLERABLE_FAILURES).unwrap(), 0);
        assert_eq!(config.get_optional(&CHECKPOINTS_DIRECTORY).unwrap(), None);
        assert_eq!(config.get(&CHECKPOINTS_NUM_RETAINED).unwrap(), 1);
        let config = yaml("execution.checkpointing:\n  interval: 5 ms\n  mode: at_least_once\n").unwrap();
        let err = config.get_optional(&CHECKPOINTING_INTERVAL).unwrap_err().to_string();
        assert!(err.contains("at least 10 ms"), "{err}");
        assert_eq!(config.get(&CHECKPOINTING_MODE).unwrap(), CheckpointingMode::AtLeastOnce);
        assert_eq!(CheckpointingMode::parse_value("exactly-once").unwrap(), CheckpointingMode::ExactlyOnce);
        let err = CheckpointingMode::parse_value("twice").unwrap_err();
        assert!(err.contains("EXACTLY_ONCE or AT_LEAST_ONCE"), "{err}");
    }

    #[test]
    fn nested_and_flat_yaml_agree() {
        let nested = yaml(
            "parallelism:\n  default: 4\nexecution:\n  buffer-timeout: 10 ms\n\
             \x20 runtime-mode: BATCH\ntaskmanager:\n  numberOfTaskSlots: 2\n",
        )
        .unwrap();
        let flat = yaml(
            "parallelism.default: 4\nexecution.buffer-timeout: 10 ms\n\
             execution.runtime-mode: BATCH\ntaskmanager.numberOfTaskSlots: 2\n",
        )
        .unwrap();
        let mixed = yaml(
            "parallelism: {default: 4}\nexecution:\n  buffer-timeout: 10 ms\n\
             execution.runtime-mode: BATCH\ntaskmanager.numberOfTaskSlots: 2\n",
        )
        .unwrap();
        assert_eq!(nested, flat);
        assert_eq!(nested, mixed);
        assert_eq!(nested.get_raw("parallelism.default"), Some("4"));
        assert_eq!(nested.get(&BUFFER_TIMEOUT).unwrap(), Duration::from_millis(10));
        assert_eq!(nested.get(&TASK_SLOTS).unwrap(), 2);
        assert_eq!(nested.get(&RUNTIME_MODE).unwrap(), RuntimeMode::Batch);
    }

    #[test]
    fn yaml_scalars_keep_their_text() {
        let config = yaml(
            "a: 0.50\nb: True\nc: 0x1F\nd: 'quoted: yes'\ne: \"null\"\nf: ~\ng: null\nh:\n\
             i: 007\nj: |\n  two\n  lines\nk: {}\n",
        )
        .unwrap();
        assert_eq!(config.get_raw("a"), Some("0.50"));
        assert_eq!(config.get_raw("b"), Some("True"));
        assert_eq!(config.get_raw("c"), Some("0x1F"));
        assert_eq!(config.get_raw("d"), Some("quoted: yes"));
        assert_eq!(config.get_raw("e"), Some("null"));
        assert!(!config.contains("f") && !config.contains("g") && !config.contains("h"));
        assert_eq!(config.get_raw("i"), Some("007"));
        assert_eq!(config.get_raw("j"), Some("two\nlines\n"));
        assert!(!config.contains("k"));
        assert_eq!(config.len(), 7);
    }

    #[test]
    fn yaml_lists() {
        let config = yaml(
            "pipeline:\n  jars:\n    - a.jar\n    - b.jar\nflow: [x, 1, true]\nempty: []\n\
             tricky: ['a;b', \"it's\", c]\nmaps:\n  - {name: n1, path: /p}\n\
             \x20 - name: n2\n    path: 'x:y'\n",
        )
        .unwrap();
        assert_eq!(config.get_raw("pipeline.jars"), Some("a.jar;b.jar"));
        assert_eq!(config.get_raw("flow"), Some("x;1;true"));
        assert_eq!(config.get_raw("empty"), Some(""));
        assert_eq!(config.get_raw("tricky"), Some("'a;b';'it''s';c"));
        assert_eq!(config.get_raw("maps"), Some("name:n1,path:/p;'name:n2,path:''x:y'''"));

        let err = yaml("a:\n  - [1, 2]\n").unwrap_err().to_string();
        assert!(err.contains("'a'") && err.contains("line 2"), "{err}");
        let err = yaml("a: [1, ~]\n").unwrap_err().to_string();
        assert!(err.contains("'a'") && err.contains("null"), "{err}");
    }

    #[test]
    fn yaml_empty_and_odd_documents() {
        assert!(yaml("").unwrap().is_empty());
        assert!(yaml("# only a comment\n").unwrap().is_empty());
        assert!(yaml("---\n").unwrap().is_empty());
        assert!(yaml("~\n").unwrap().is_empty());

        let err = yaml("just text\n").unwrap_err().to_string();
        assert!(err.contains("test.yaml") && err.contains("top level"), "{err}");
        let err = yaml("- a\n- b\n").unwrap_err().to_string();
        assert!(err.contains("a list"), "{err}");
        let err = yaml("a: 1\n---\nb: 2\n").unwrap_err().to_string();
        assert!(err.contains("more than one") && err.contains("line 2"), "{err}");
        let err = yaml("a.b: 1\na:\n  b: 2\n").unwrap_err().to_string();
        assert!(err.contains("'a.b'") && err.contains("twice") && err.contains("line 3"), "{err}");
        let err = yaml("? [x]\n: 1\n").unwrap_err().to_string();
        assert!(err.contains("only plain keys"), "{err}");
        let err = yaml("~: 1\n").unwrap_err().to_string();
        assert!(err.contains("empty key"), "{err}");

        let config = yaml("base: &b 10\nother: *b\nlist: &l [1, 2]\ncopy: *l\n").unwrap();
        assert_eq!(config.get_raw("other"), Some("10"));
        assert_eq!(config.get_raw("copy"), Some("1;2"));
    }

    #[test]
    fn bad_yaml_reports_file_and_line() {
        let text = "a: 1\nb: 2\nc: [unclosed\nd: 4\n";
        let err = Configuration::from_yaml_str(text, Path::new("/etc/eddy/eddy.yaml")).unwrap_err();
        match &err {
            EddyError::ConfigFile { path, reason } => {
                assert_eq!(path, Path::new("/etc/eddy/eddy.yaml"));
                assert!(reason.contains("line "), "{reason}");
            }
            other => panic!("unexpected error {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("/etc/eddy/eddy.yaml") && text.contains("line"), "{text}");

        let err = yaml("a: 1\nb: : 2\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = yaml("a: 1\n  b: 2\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn yaml_file() {
        let dir = TempDir::new("file");
        let missing = dir.0.join("nope.yaml");
        let err = Configuration::from_yaml_file(&missing).unwrap_err();
        assert!(matches!(err, EddyError::ConfigFile { .. }));
        assert!(err.to_string().contains("nope.yaml"), "{err}");

        let file = dir.0.join("bad.yaml");
        std::fs::write(&file, [b'a', b':', b' ', 0xff, b'\n']).unwrap();
        let err = Configuration::from_yaml_file(&file).unwrap_err().to_string();
        assert!(err.contains("bad.yaml") && err.contains("UTF-8"), "{err}");

        let file = dir.0.join("ok.yaml");
        std::fs::write(&file, "parallelism.default: 3\n").unwrap();
        let config = Configuration::from_yaml_file(&file).unwrap();
        assert_eq!(config.get_optional(&PARALLELISM_DEFAULT).unwrap(), Some(3));
    }

    #[test]
    fn dynamic_properties() {
        let args = ["run", "-Dparallelism.default=4", "-D", "execution.buffer-timeout=5 ms", "job.jar", "-x"]
            .map(String::from);
        let (config, rest) = parse_dynamic_properties(args).unwrap();
        assert_eq!(rest, vec!["run", "job.jar", "-x"]);
        assert_eq!(config.get_raw("parallelism.default"), Some("4"));
        assert_eq!(config.get(&BUFFER_TIMEOUT).unwrap(), Duration::from_millis(5));

        let (config, rest) =
            parse_dynamic_properties(["-Da=x=y", "-Db=", "--", "-Dc=1"].map(String::from)).unwrap();
        assert_eq!(config.get_raw("a"), Some("x=y"));
        assert_eq!(config.get_raw("b"), Some(""));
        assert!(!config.contains("c"));
        assert_eq!(rest, vec!["--", "-Dc=1"]);

        let err = parse_dynamic_properties(["-Dnovalue".to_string()]).unwrap_err().to_string();
        assert!(err.contains("novalue"), "{err}");
        let err = parse_dynamic_properties(["-D", "alone"].map(String::from)).unwrap_err().to_string();
        assert!(err.contains("alone"), "{err}");
        let err = parse_dynamic_properties(["-D=1".to_string()]).unwrap_err().to_string();
        assert!(err.contains("=1"), "{err}");
        assert!(parse_dynamic_properties(["-D".to_string()]).is_err());
    }

    #[test]
    fn load_from_conf_dir_and_properties() {
        let dir = TempDir::new("load");
        let conf = dir.0.join("myconf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join(CONF_FILE_NAME),
            "parallelism:\n  default: 2\ntaskmanager.numberOfTaskSlots: 3\n",
        )
        .unwrap();

        // EDDY_CONF_DIR, absolute and relative to cwd.
        let config = Configuration::load_from(conf.to_str(), None, Path::new("/")).unwrap();
        assert_eq!(config.get_optional(&PARALLELISM_DEFAULT).unwrap(), Some(2));
        let config = Configuration::load_from(Some("myconf"), None, &dir.0).unwrap();
        assert_eq!(config.get(&TASK_SLOTS).unwrap(), 3);

        // EDDY_PROPERTIES overrides the file.
        let props = "parallelism.default: 8\nexecution.runtime-mode: batch\n";
        let config = Configuration::load_from(Some("myconf"), Some(props), &dir.0).unwrap();
        assert_eq!(config.get_optional(&PARALLELISM_DEFAULT).unwrap(), Some(8));
        assert_eq!(config.get(&TASK_SLOTS).unwrap(), 3);
        assert_eq!(config.get(&RUNTIME_MODE).unwrap(), RuntimeMode::Batch);

        // A set EDDY_CONF_DIR without the file is an error naming the path.
        let err = Configuration::load_from(Some("missing"), None, &dir.0).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains(CONF_FILE_NAME), "{err}");
        assert!(err.contains(CONF_DIR_ENV), "{err}");

        // Without EDDY_CONF_DIR, ./conf is optional...
        let config = Configuration::load_from(None, None, &dir.0).unwrap();
        assert!(config.is_empty());
        let config = Configuration::load_from(Some("  "), Some("a: 1"), &dir.0).unwrap();
        assert_eq!(map(&config), vec![("a".into(), "1".into())]);
        // ...and read when present.
        std::fs::create_dir_all(dir.0.join(DEFAULT_CONF_DIR)).unwrap();
        std::fs::write(dir.0.join(DEFAULT_CONF_DIR).join(CONF_FILE_NAME), "x: 1\n").unwrap();
        let config = Configuration::load_from(None, Some("y: 2"), &dir.0).unwrap();
        assert_eq!(map(&config), vec![("x".into(), "1".into()), ("y".into(), "2".into())]);

        // Bad EDDY_PROPERTIES names the variable.
        let err = Configuration::load_from(None, Some("a: [1"), &dir.0).unwrap_err().to_string();
        assert!(err.contains(PROPERTIES_ENV), "{err}");
    }
}
