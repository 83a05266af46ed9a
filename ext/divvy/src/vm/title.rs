//! Process titles, so `ps` shows who is who: `divvy master: job.rb (37/100
//! done)`, `divvy worker 3: job.rb`.

use magnus::{prelude::*, Error, RString, Ruby, Value};

/// Returns the name of the running script (the base name of `$0`).
pub fn script_name(ruby: &Ruby) -> String {
    let program: Result<RString, Error> = ruby.eval("File.basename($PROGRAM_NAME)");
    program
        .ok()
        .and_then(|name| name.to_string().ok())
        .unwrap_or_else(|| String::from("ruby"))
}

/// Gives the process its usual title back (`$0`) after a run.
pub fn restore(ruby: &Ruby) {
    if let Ok(program) = ruby.eval::<Value>("$PROGRAM_NAME") {
        let _ = ruby
            .module_process()
            .funcall::<_, _, Value>("setproctitle", (program,));
    }
}

/// Sets this process's title. A failure only leaves the old title.
pub fn set(ruby: &Ruby, title: &str) {
    let _ = ruby
        .module_process()
        .funcall::<_, _, Value>("setproctitle", (title,));
}

/// The master's title: its script and how far the run is.
pub fn master(script: &str, done: u64, total: Option<u64>) -> String {
    match total {
        Some(total) => format!("divvy master: {script} ({done}/{total} done)"),
        None => format!("divvy master: {script} ({done} done)"),
    }
}

/// A worker's title: its number and script.
pub fn worker(number: usize, script: &str) -> String {
    format!("divvy worker {number}: {script}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_who_is_who() {
        assert_eq!(
            master("job.rb", 37, Some(100)),
            "divvy master: job.rb (37/100 done)"
        );
        assert_eq!(master("job.rb", 37, None), "divvy master: job.rb (37 done)");
        assert_eq!(worker(3, "job.rb"), "divvy worker 3: job.rb");
    }
}
