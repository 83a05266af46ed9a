//! How many arguments a `perform` method takes, so a worker can refuse an
//! item of the wrong size with a clear message instead of a bare
//! `ArgumentError` from deep inside the call.

/// The positional parameters of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arity {
    /// Parameters without a default.
    pub required: usize,
    /// Parameters with a default.
    pub optional: usize,
    /// True with a `*rest` parameter.
    pub rest: bool,
}

impl Arity {
    /// Builds an arity from the kinds `Method#parameters` lists (`req`,
    /// `opt`, `rest`; others are ignored).
    pub fn from_kinds<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Arity {
        let mut arity = Arity::default();
        for kind in kinds {
            match kind {
                "req" => arity.required += 1,
                "opt" => arity.optional += 1,
                "rest" => arity.rest = true,
                _ => {}
            }
        }
        arity
    }

    /// True when a call with `count` positional arguments fits.
    pub fn accepts(&self, count: usize) -> bool {
        count >= self.required && (self.rest || count <= self.required + self.optional)
    }

    /// Says what the method takes: "1 argument", "1..2 arguments",
    /// "at least 1 argument".
    pub fn describe(&self) -> String {
        let noun = |count: usize| if count == 1 { "argument" } else { "arguments" };
        if self.rest {
            format!("at least {} {}", self.required, noun(self.required))
        } else if self.optional > 0 {
            let most = self.required + self.optional;
            format!("{}..{most} {}", self.required, noun(most))
        } else {
            format!("{} {}", self.required, noun(self.required))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_required_optional_and_rest() {
        let exact = Arity::from_kinds(["req"]);
        assert!(exact.accepts(1) && !exact.accepts(0) && !exact.accepts(2));
        assert_eq!(exact.describe(), "1 argument");

        let ranged = Arity::from_kinds(["req", "opt", "block"]);
        assert!(ranged.accepts(1) && ranged.accepts(2) && !ranged.accepts(3));
        assert_eq!(ranged.describe(), "1..2 arguments");

        let splat = Arity::from_kinds(["req", "rest", "key"]);
        assert!(splat.accepts(5) && !splat.accepts(0));
        assert_eq!(splat.describe(), "at least 1 argument");

        assert_eq!(Arity::from_kinds([]).describe(), "0 arguments");
    }
}
