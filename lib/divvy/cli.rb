# frozen_string_literal: true

require 'optparse'
require 'etc'
require 'divvy'
require 'divvy/cli/exit_status'
require 'divvy/cli/halt'
require 'divvy/cli/hook_watch'
require 'divvy/cli/joblog_options'
require 'divvy/cli/report'
require 'divvy/cli/script'

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
      # Bytes that are not valid in the locale's encoding (a file name)
      # would make OptionParser raise: such arguments go on as bytes.
      @argv = argv.map { |arg| arg.valid_encoding? ? arg : arg.b }
      @stderr = stderr
      @workers = nil
      @verbose = false
      @options = { retries: 0 }
    end

    # Runs the command: parses the options, loads the script and runs its
    # task on a {Divvy::Master}. Errors are printed, not raised.
    #
    # @return [Integer] the exit status: 0 when every item was performed
    #   (or a `--halt success=` condition was met), 1 when an item finally
    #   failed, a hook raised, workers could not boot or the script could
    #   not be run, 2 for a usage error, 3 when `--halt` ended the run on
    #   failures, 128 + the signal number when a signal stopped the run
    def run
      script = parse
      check_ranges
      task = Script.load(script, report, @verbose ? @stderr : nil)
      @hooks = HookWatch.new(task)
      @master = Divvy::Master.new(task, @workers || Divvy.processors, @verbose, **@options)
      @master.run
      ExitStatus.of(@master)
    rescue ScriptError, StandardError, Divvy::Master::Shutdown => e # Shutdown is a SignalException
      stopped_by(e)
    end

    private

    # Prints what stopped the command and returns its exit status; raises
    # `error` again when it is none of divvy's and no hook raised it.
    def stopped_by(error)
      hook = @hooks&.hook_for(error)
      return report.hook_failed(hook, error, @master) if hook

      case error
      when UsageError, OptionParser::ParseError then report.failure(USAGE, "#{error.message}\n#{parser.banner}")
      when Divvy::Master::Shutdown then report.stopped(error)
      when Divvy::Error then report.failure(1, error.message)
      else raise error
      end
    end

    def report
      Report.new(@stderr, verbose: @verbose)
    end

    # A task Divvy::Master.new accepts, for {#check_ranges}.
    STAND_IN = Class.new do
      def dispatch; end
      def perform; end
    end.new.freeze
    private_constant :STAND_IN

    # Checks the numbers given against the ranges divvy accepts before the
    # script runs: a Divvy::Master made for a stand-in task raises the
    # Divvy::Error the real one would, and it becomes a usage error.
    def check_ranges
      Divvy::Master.new(STAND_IN, @workers || 1, **@options)
    rescue Divvy::Error => e
      raise UsageError, "invalid value: #{e.message}"
    end

    def parser
      @parser ||= OptionParser.new do |opts|
        opts.banner = 'Usage: divvy [-n WORKERS] [OPTIONS] SCRIPT [ARGS...]'
        opts.separator ''
        opts.separator 'Runs the Divvy::Parallelizable task defined in SCRIPT on WORKERS forked'
        opts.separator 'processes. ARGS are passed to the script as ARGV.'
        opts.separator ''
        define_run_options(opts)
        define_worker_options(opts)
        [Halt, JobLogOptions].each { |options| options.define(opts, @options) }
        define_other_options(opts)
        ExitStatus.describe(opts)
      end
    end

    # -n, -r, -t: how many workers, and how items are retried and bounded.
    def define_run_options(opts)
      opts.on('-n', '--workers WORKERS', Integer, 'number of worker processes (default: one per processor)') do |count|
        @workers = count
      end
      opts.on('-r', '--retries N', Integer, 'try a failed item up to N more times (default: 0)') do |count|
        @options[:retries] = count
      end
      opts.on('-t', '--timeout SECONDS', Float, 'stop a worker whose item takes longer (default: none)') do |seconds|
        @options[:timeout] = seconds
      end
    end

    # --max-tasks, --max-memory, --shard: when workers are replaced, and
    # which items this machine performs.
    def define_worker_options(opts)
      opts.on('--max-tasks N', Integer, 'replace a worker after it performed N items') { |n| @options[:max_tasks] = n }
      opts.on('--max-memory MB', Integer, 'replace a worker whose resident memory passes MB after an item') do |mb|
        @options[:max_memory] = mb
      end
      opts.on('--shard I/N|auto', 'perform only items whose dispatch index modulo N is I (0 <= I < N)') do |shard|
        @options[:shard] = Shard.parse(shard)
      rescue Divvy::Error => e
        raise UsageError, "invalid --shard #{shard}: #{e.message}"
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
      rest = parser.order(@argv).tap { JobLogOptions.check(@options) }
      script = rest.shift or raise UsageError, 'no script given'
      ARGV.replace(rest)
      script
    end
  end
end
