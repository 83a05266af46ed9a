//! One line of a job log: the columns, the header that names them, how a
//! record is written, and how a line is read back. GNU parallel's columns
//! come first, in its order, so that tools written for its `--joblog` read
//! divvy's; divvy's own follow. Fields are separated by tabs and never
//! contain one.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::digits::Digits;

/// The columns, in order: GNU parallel's nine, then divvy's.
pub const COLUMNS: [&str; 15] = [
    "Seq",
    "Host",
    "Starttime",
    "JobRuntime",
    "Send",
    "Receive",
    "Exitval",
    "Signal",
    "Command",
    "Digest",
    "Outcome",
    "Attempts",
    "Worker",
    "Reason",
    "Error",
];

/// The longest `Error` field written, in characters.
const ERROR_LIMIT: usize = 200;

/// The header line, newline included.
pub fn header() -> String {
    let mut line = COLUMNS.join("\t");
    line.push('\n');
    line
}

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its `perform` returned (or raised `Divvy::Break`).
    Performed,
    /// It failed after its retries.
    Failed,
}

impl Outcome {
    /// The word in the `Outcome` column.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Performed => "performed",
            Outcome::Failed => "failed",
        }
    }

    /// Reads the word of the `Outcome` column.
    fn parse(word: &str) -> Option<Outcome> {
        match word {
            "performed" => Some(Outcome::Performed),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// One item that settled, as the master saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The item's dispatch index (`Seq` is one more).
    pub index: u64,
    /// The digest of its Marshal dump.
    pub digest: u64,
    /// When the master sent its last try to a worker.
    pub sent: Instant,
    /// When the master learnt how it ended.
    pub settled: Instant,
    /// The size of its Marshal dump (`Send`).
    pub sent_bytes: u64,
    /// The size of its result's Marshal dump, 0 without one (`Receive`).
    pub received_bytes: u64,
    /// How many times it was tried.
    pub attempts: u32,
    /// The number of the worker that last tried it.
    pub worker: u32,
    /// How it failed; None when it was performed. Boxed, so that the
    /// record of a performed item, the common one, stays small.
    pub fault: Option<Box<Fault>>,
}

/// How an item failed, for the columns after `Outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The status its worker exited with, 1 when `perform` raised, -1 for
    /// a timeout or an unknown end; never 0 together with `signal` (GNU
    /// parallel's tools take that for a success).
    pub exit_value: i32,
    /// The signal that killed its worker, 0 for none.
    pub signal: i32,
    /// Why it failed (`Divvy::TaskError#reason`): `raised`, `died`,
    /// `timed_out` or `lost`.
    pub reason: &'static str,
    /// How, in words: the exception's class and message, or how its worker
    /// ended.
    pub error: String,
}

/// The fields every record of a run shares, and the clock that turns the
/// master's instants into wall-clock time.
#[derive(Debug, Clone)]
pub struct RunFields {
    /// The machine's name (`Host`), cut to `NAME_LIMIT` bytes, between
    /// tabs.
    host: String,
    /// What runs the items: the script's name (`Command`), cut to
    /// `NAME_LIMIT` bytes, between tabs.
    command: String,
    /// An instant, and the wall-clock time it was, since the epoch.
    clock: (Instant, Duration),
    /// The last whole second of `Starttime` written, and its digits: the
    /// second changes once a second, the items many times.
    second: (u64, Digits),
    /// Where each line is put together, kept so that it is not cleared
    /// for each.
    line: Digits,
}

impl RunFields {
    /// Returns the fields of a run on `host` of `command`, both cleaned of
    /// tabs and line breaks and cut to `NAME_LIMIT` bytes, with the clock
    /// read now.
    pub fn new(host: &str, command: &str) -> RunFields {
        RunFields {
            host: format!("\t{}\t", name(host)),
            command: format!("\t{}\t", name(command)),
            clock: (
                Instant::now(),
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            second: (u64::MAX, Digits::default()),
            line: Digits::default(),
        }
    }
}

impl Record {
    /// How the item ended.
    pub fn outcome(&self) -> Outcome {
        match self.fault {
            Some(_) => Outcome::Failed,
            None => Outcome::Performed,
        }
    }

    /// Appends the record's line, newline included, to `out`. The numbers
    /// are put together on the stack and copied in a few runs: a line is
    /// written for every item, tiny ones too.
    pub fn write_to(&self, fields: &mut RunFields, out: &mut Vec<u8>) {
        let (exit_value, signal) = self
            .fault
            .as_ref()
            .map_or((0, 0), |fault| (fault.exit_value, fault.signal));
        let RunFields {
            host,
            command,
            clock,
            second,
            line,
        } = fields;
        line.decimal(self.index.saturating_add(1));
        line.put(host.as_bytes());
        start_time(*clock, second, self.sent, line);
        line.tab();
        line.seconds(self.settled.saturating_duration_since(self.sent));
        line.tab();
        line.decimal(self.sent_bytes);
        line.tab();
        line.decimal(self.received_bytes);
        line.tab();
        line.signed(exit_value);
        line.tab();
        line.signed(signal);
        line.put(command.as_bytes());
        line.hex(self.digest);
        line.tab();
        line.put(self.outcome().word().as_bytes());
        line.tab();
        line.decimal(u64::from(self.attempts));
        line.tab();
        line.decimal(u64::from(self.worker));
        line.tab();
        match &self.fault {
            Some(fault) => {
                line.put(fault.reason.as_bytes());
                out.extend_from_slice(line.take());
                out.push(b'\t');
                out.extend_from_slice(field(&fault.error, ERROR_LIMIT).as_bytes());
                out.push(b'\n');
            }
            None => {
                line.put(b"-\t-\n");
                out.extend_from_slice(line.take());
            }
        }
    }
}

/// Appends the wall-clock time of `instant`, in seconds since the epoch
/// with three decimals (`Starttime`), to `line`; `clock` is an instant and
/// the wall-clock time it was, `second` the last whole second written and
/// its digits.
fn start_time(
    clock: (Instant, Duration),
    second: &mut (u64, Digits),
    instant: Instant,
    line: &mut Digits,
) {
    let (base, wall) = clock;
    let time = match instant.checked_duration_since(base) {
        Some(later) => wall + later,
        None => wall.saturating_sub(base.duration_since(instant)),
    };
    let (whole, digits) = second;
    if *whole != time.as_secs() {
        *whole = time.as_secs();
        digits.clear();
        digits.decimal(*whole);
    }
    line.put(digits.as_bytes());
    line.millis(time);
}

/// What resuming needs of a line: the item, its digest and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The item's dispatch index.
    pub index: u64,
    /// The digest of its Marshal dump.
    pub digest: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// Reads one record's line (without its newline).
///
/// Returns None for a line that is not one of divvy's records.
pub fn parse(line: &str) -> Option<Entry> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() != COLUMNS.len() {
        return None;
    }
    let seq: u64 = fields[0].parse().ok()?;
    let digest = fields[9];
    if digest.len() != 16 {
        return None;
    }
    Some(Entry {
        index: seq.checked_sub(1)?,
        digest: u64::from_str_radix(digest, 16).ok()?,
        outcome: Outcome::parse(fields[10])?,
    })
}

/// `text` as one field of at most `NAME_LIMIT` bytes, cut at a character.
fn name(text: &str) -> String {
    let mut name = field(text, NAME_LIMIT);
    while name.len() > NAME_LIMIT {
        name.pop();
    }
    name
}

/// `text` as one field: control characters (tabs, line breaks) become
/// spaces, and it is cut to `limit` characters.
fn field(text: &str, limit: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(limit)
        .collect()
}

/// The longest host name and command written, in bytes: so that a line
/// but its `Error` fits `Digits`.
const NAME_LIMIT: usize = 64;

/// The longest line but its `Error`: nine numbers of at most 20 digits (a
/// sign included), two runs of three decimals, two names, the digest, the
/// longest words, the tabs and the newline.
const LONGEST_LINE: usize = 9 * 20 + 2 * 4 + 2 * NAME_LIMIT + 16 + 2 * "timed_out".len() + 16;

// `Digits` panics past its capacity; this makes sure no line reaches it.
const _: () = assert!(LONGEST_LINE <= Digits::CAPACITY);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record of item `index`, performed.
    pub fn performed(index: u64, digest: u64) -> Record {
        let now = Instant::now();
        Record {
            index,
            digest,
            sent: now,
            settled: now,
            sent_bytes: 6,
            received_bytes: 0,
            attempts: 1,
            worker: 1,
            fault: None,
        }
    }

    fn fields() -> RunFields {
        RunFields {
            host: String::from("\tnode1\t"),
            command: String::from("\tnight.rb\t"),
            clock: (Instant::now(), Duration::from_millis(1_700_000_000_250)),
            second: (u64::MAX, Digits::default()),
            line: Digits::default(),
        }
    }

    #[test]
    fn the_header_names_gnu_parallels_columns_then_divvys() {
        assert_eq!(
            header(),
            "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\t\
             Digest\tOutcome\tAttempts\tWorker\tReason\tError\n"
        );
    }

    #[test]
    fn writes_a_performed_item() {
        let mut fields = fields();
        let mut record = performed(41, 0xabc);
        record.sent = fields.clock.0 + Duration::from_millis(1_500);
        record.settled = record.sent + Duration::from_micros(2_345_600);
        record.received_bytes = 12;
        let mut line = Vec::new();
        record.write_to(&mut fields, &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "42\tnode1\t1700000001.750\t2.345\t6\t12\t0\t0\tnight.rb\t\
             0000000000000abc\tperformed\t1\t1\t-\t-\n"
        );
    }

    #[test]
    fn writes_a_failed_item_on_one_line() {
        let mut fields = fields();
        let mut record = performed(0, u64::MAX);
        record.sent = fields.clock.0;
        record.settled = fields.clock.0;
        record.attempts = 3;
        record.worker = 12;
        record.fault = Some(Box::new(Fault {
            exit_value: -1,
            signal: 9,
            reason: "raised",
            error: String::from("RuntimeError: a\tb\nc"),
        }));
        let mut line = Vec::new();
        record.write_to(&mut fields, &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "1\tnode1\t1700000000.250\t0.000\t6\t0\t-1\t9\tnight.rb\t\
             ffffffffffffffff\tfailed\t3\t12\traised\tRuntimeError: a b c\n"
        );
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let mut fields = fields();
        let mut line = Vec::new();
        performed(7, 0x1234_5678_9abc_def0).write_to(&mut fields, &mut line);
        let line = String::from_utf8(line).unwrap();
        assert_eq!(
            parse(line.trim_end()),
            Some(Entry {
                index: 7,
                digest: 0x1234_5678_9abc_def0,
                outcome: Outcome::Performed
            })
        );
    }

    #[test]
    fn refuses_lines_that_are_not_records() {
        assert_eq!(parse(header().trim_end()), None);
        assert_eq!(
            parse("1\t:\t1.0\t0.1\t0\t0\t0\t0\techo 1"),
            None,
            "GNU parallel's"
        );
        let good = "1\th\t0.000\t0.000\t0\t0\t0\t0\tc\t0000000000000001\tperformed\t1\t1\t-\t-";
        assert!(parse(good).is_some());
        for bad in [
            good.replace("performed", "done"),
            good.replacen('1', "0", 1),
            good.replace("0000000000000001", "1"),
            good.replace("0000000000000001", "000000000000000g"),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn cleans_and_cuts_fields() {
        assert_eq!(field("a\tb\r\nc", 10), "a b  c");
        assert_eq!(name(&"é".repeat(100)).len(), NAME_LIMIT);
        assert_eq!(
            field(&"é".repeat(300), ERROR_LIMIT).chars().count(),
            ERROR_LIMIT
        );
    }
}
