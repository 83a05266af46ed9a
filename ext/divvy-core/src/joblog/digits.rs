//! The numbers of a job log's line, put together on the stack: a line is
//! written for every item, tiny ones too, so its numbers are turned into
//! digits two at a time from tables, without `format!`, and copied out in
//! a few runs. Used by the writer thread, in the master.

use std::time::Duration;

/// Two decimal digits for each number below 100.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The two lowercase hexadecimal digits of each byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0xf]];
        byte += 1;
    }
    pairs
};

/// 10, 100, ... 10^19: a number at least the first k of them has k + 1
/// digits.
const POWERS_OF_TEN: [u64; 19] = {
    let mut powers = [10u64; 19];
    let mut at = 1;
    while at < 19 {
        powers[at] = powers[at - 1] * 10;
        at += 1;
    }
    powers
};

/// A run of bytes put together on the stack, `CAPACITY` long. Appending
/// past it panics: whoever appends bounds what it puts in (see the
/// record's `NAME_LIMIT`).
#[derive(Debug, Clone)]
pub(super) struct Digits {
    bytes: [u8; Digits::CAPACITY],
    len: usize,
}

impl Default for Digits {
    fn default() -> Digits {
        Digits {
            bytes: [0; Digits::CAPACITY],
            len: 0,
        }
    }
}

impl Digits {
    /// How many bytes a run holds.
    pub(super) const CAPACITY: usize = 512;

    /// The run so far.
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Empties the run.
    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    /// Returns the run so far, and starts a new one.
    pub(super) fn take(&mut self) -> &[u8] {
        let len = std::mem::take(&mut self.len);
        &self.bytes[..len]
    }

    /// Appends `text` (a short word).
    pub(super) fn put(&mut self, text: &[u8]) {
        self.bytes[self.len..self.len + text.len()].copy_from_slice(text);
        self.len += text.len();
    }

    /// Appends a tab.
    pub(super) fn tab(&mut self) {
        self.bytes[self.len] = b'\t';
        self.len += 1;
    }

    /// Appends `number` in decimal, in place, two digits per division.
    pub(super) fn decimal(&mut self, mut number: u64) {
        if number < 10 {
            // Most numbers of a line: a try, a worker, a status.
            self.bytes[self.len] = b'0' + number as u8;
            self.len += 1;
            return;
        }
        let width = 1 + POWERS_OF_TEN
            .iter()
            .take_while(|power| number >= **power)
            .count();
        let mut at = self.len + width;
        self.len = at;
        while number >= 100 {
            let pair = (number % 100) as usize * 2;
            number /= 100;
            at -= 2;
            self.bytes[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if number >= 10 {
            let pair = number as usize * 2;
            self.bytes[at - 2..at].copy_from_slice(&PAIRS[pair..pair + 2]);
        } else {
            self.bytes[at - 1] = b'0' + number as u8;
        }
    }

    /// Appends `number` in decimal, with a minus sign when negative.
    pub(super) fn signed(&mut self, number: i32) {
        if number < 0 {
            self.put(b"-");
        }
        self.decimal(u64::from(number.unsigned_abs()));
    }

    /// Appends `duration` in seconds with three decimals, as GNU parallel
    /// writes `Starttime` and `JobRuntime`.
    pub(super) fn seconds(&mut self, duration: Duration) {
        self.decimal(duration.as_secs());
        self.millis(duration);
    }

    /// Appends the milliseconds of `duration` as three decimals.
    pub(super) fn millis(&mut self, duration: Duration) {
        let millis = duration.subsec_millis() as usize;
        let pair = (millis % 100) * 2;
        self.put(&[
            b'.',
            b'0' + (millis / 100) as u8,
            PAIRS[pair],
            PAIRS[pair + 1],
        ]);
    }

    /// Appends `number` as 16 lowercase hexadecimal digits, a byte (two
    /// digits) at a time.
    pub(super) fn hex(&mut self, number: u64) {
        let line = &mut self.bytes[self.len..self.len + 16];
        for (pair, byte) in line.chunks_exact_mut(2).zip(number.to_be_bytes()) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
        }
        self.len += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `append` put in a fresh run, as text.
    fn written(append: impl FnOnce(&mut Digits)) -> String {
        let mut digits = Digits::default();
        append(&mut digits);
        String::from_utf8(digits.take().to_vec()).unwrap()
    }

    #[test]
    fn writes_decimals_of_every_width_as_format_does() {
        let mut numbers = vec![0, 9, 10, 99, 100, 101, 999, 1_000, u64::MAX];
        numbers.extend(POWERS_OF_TEN.iter().flat_map(|power| [power - 1, *power]));
        for number in numbers {
            assert_eq!(written(|d| d.decimal(number)), number.to_string());
        }
        for number in [0, 7, -1, -10, i32::MAX, i32::MIN] {
            assert_eq!(written(|d| d.signed(number)), number.to_string());
        }
    }

    #[test]
    fn writes_seconds_with_three_decimals_and_sixteen_hex_digits() {
        assert_eq!(written(|d| d.seconds(Duration::ZERO)), "0.000");
        assert_eq!(
            written(|d| d.seconds(Duration::from_micros(12_045_999))),
            "12.045"
        );
        assert_eq!(written(|d| d.hex(0xabc)), "0000000000000abc");
        assert_eq!(written(|d| d.hex(u64::MAX)), "ffffffffffffffff");
    }

    #[test]
    fn appends_in_order_and_take_starts_a_new_run() {
        let mut digits = Digits::default();
        digits.decimal(42);
        digits.tab();
        digits.put(b"performed");
        assert_eq!(digits.as_bytes(), b"42\tperformed");
        assert_eq!(digits.take(), b"42\tperformed");
        digits.decimal(7);
        assert_eq!(digits.take(), b"7");
        digits.put(b"x");
        digits.clear();
        assert_eq!(digits.as_bytes(), b"");
    }
}
