# frozen_string_literal: true

require 'optparse'
require 'etc'
require 'divvy'

module Divvy
  # The `divvy` command: parses the command line, loads the script and runs
  # it on a Divvy::Master. Runs in the master.
  class CLI
    # Exit status for a usage error.
    USAGE = 2

    # Raised for a command line that cannot be run; exits with USAGE.
    class UsageError < Divvy::Error; end

    # Runs in the master; nothing happens until {#run}.
    #
    # @param argv [Array<String>] the command line, without the program name
    # @param stderr [IO] where errors and usage go
    def initialize(argv, stderr: $stderr)
      @argv = argv.dup
      @stderr = stderr
      @workers = nil
      @verbose = false
      @options = { retries: 0 }
    end

    # Runs the command: parses the options, loads the script and runs its
    # task on a {Divvy::Master}. Errors are printed, not raised.
    #
    # @return [Integer] the exit status: 0 when every item was performed, 1
    #   when an item finally failed, workers could not boot or the script
    #   could not be run, 2 for a usage error, 128 + the signal number when a
    #   signal stopped the run
    def run
      script = parse
      task = load_script(script)
      master = Divvy::Master.new(task, @workers || Divvy.processors, @verbose, **@options)
      master.run
      master.items_failed.zero? ? 0 : 1
    rescue UsageError, OptionParser::ParseError => e
      fail_with(USAGE, "#{e.message}\n#{parser.banner}")
    rescue Divvy::Master::Shutdown => e
      @stderr.puts("divvy: #{e.message}")
      128 + (e.signo || 15)
    rescue Divvy::Error => e
      fail_with(1, e.message)
    end

    private

    def parser
      @parser ||= OptionParser.new do |opts|
        opts.banner = 'Usage: divvy [-n WORKERS] [OPTIONS] SCRIPT [ARGS...]'
        opts.separator ''
        opts.separator 'Runs the Divvy::Parallelizable task defined in SCRIPT on WORKERS forked'
        opts.separator 'processes. ARGS are passed to the script as ARGV.'
        opts.separator ''
        define_run_options(opts)
        define_worker_options(opts)
        define_other_options(opts)
      end
    end

    # -n, -r, -t: how many workers, and how items are retried and bounded.
    def define_run_options(opts)
      opts.on('-n', '--workers WORKERS', Integer, 'number of worker processes (default: one per processor)') do |count|
        @workers = check(count, count >= 1, "worker count: #{count} (must be at least 1)")
      end
      opts.on('-r', '--retries N', Integer, 'try a failed item up to N more times (default: 0)') do |count|
        @options[:retries] = check(count, count >= 0, "retry count: #{count} (must be 0 or more)")
      end
      opts.on('-t', '--timeout SECONDS', Float, 'stop a worker whose item takes longer (default: none)') do |seconds|
        valid = seconds.positive? && seconds.finite?
        @options[:timeout] = check(seconds, valid, "timeout: #{seconds} (must be more than 0)")
      end
    end

    # --max-tasks, --max-memory, --shard: when workers are replaced, and
    # which items this machine performs.
    def define_worker_options(opts)
      opts.on('--max-tasks N', Integer, 'replace a worker after it performed N items') do |count|
        @options[:max_tasks] = check(count, count >= 1, "--max-tasks: #{count} (must be at least 1)")
      end
      opts.on('--max-memory MB', Integer, 'replace a worker whose resident memory passes MB after an item') do |mb|
        @options[:max_memory] = check(mb, mb >= 1, "--max-memory: #{mb} (must be at least 1)")
      end
      opts.on('--shard I/N', 'perform only items whose dispatch index modulo N is I (0 <= I < N)') do |shard|
        index, count = shard.match(%r{\A(\d+)/(\d+)\z})&.captures&.map(&:to_i)
        valid = index && index < count
        @options[:shard] = check([index, count], valid, "--shard: #{shard} (must be I/N with 0 <= I < N)")
      end
    end

    # -p, -v, -h, --version.
    def define_other_options(opts)
      opts.on('-p', '--progress', 'show a progress line on stderr') { @options[:progress] = true }
      opts.on('-v', '--verbose', 'log worker starts, exits, respawns and retries; print backtraces') { @verbose = true }
      opts.on('-h', '--help', 'show this help') { print_and_exit(opts) }
      opts.on('--version', 'show the version') { print_and_exit("divvy #{Divvy::VERSION}") }
    end

    # Returns `value` when `valid`; raises UsageError saying "invalid `what`"
    # otherwise.
    def check(value, valid, what)
      valid ? value : raise(UsageError, "invalid #{what}")
    end

    # Prints `text` to stdout and exits 0 (for --help and --version).
    def print_and_exit(text)
      puts text
      exit 0
    end

    # Returns the script path; leaves the script's own arguments in ARGV.
    def parse
      rest = parser.order(@argv)
      script = rest.shift or raise UsageError, 'no script given'
      ARGV.replace(rest)
      script
    end

    def load_script(script)
      raise Divvy::Error, "#{script}: no such file" unless File.file?(script)
      raise Divvy::Error, "#{script}: not readable" unless File.readable?(script)

      $PROGRAM_NAME = script
      Divvy.load(script)
    rescue ScriptError, StandardError => e
      raise if e.is_a?(Divvy::Error)

      raise Divvy::Error, script_failure(script, e)
    end

    def script_failure(script, error)
      first_line = error.message.lines.first.to_s.chomp
      message = "#{script}: #{error.class}: #{first_line}"
      return message unless @verbose

      ([message] + Array(error.backtrace).map { |line| "\tfrom #{line}" }).join("\n")
    end

    def fail_with(status, message)
      @stderr.puts("divvy: #{message}")
      status
    end
  end
end
