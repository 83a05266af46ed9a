# frozen_string_literal: true

require_relative 'spec_helper'
require 'socket'

# The job log (--joblog, joblog:) and resuming from it (--resume,
# --resume-failed, resume:), from the command line and from Ruby, in real
# processes.
RSpec.describe 'the job log' do
  around do |example|
    Dir.mktmpdir('divvy-joblog-') do |dir|
      @dir = dir
      example.run
    end
  end

  attr_reader :dir

  # GNU parallel's columns, then divvy's.
  def columns
    %w[Seq Host Starttime JobRuntime Send Receive Exitval Signal Command Digest Outcome Attempts Worker Reason Error]
  end

  # A task of `ITEMS` items (default 10) that appends each performed item's
  # number to `performed` in the task's directory; items in `FAIL` (a
  # comma-separated list) raise, `SLEEP` of them (from `SLOW` on) sleeps,
  # in a `sleep` child process under CHILD (and raises when it was killed).
  def write_task(name = 'night.rb')
    write_script(dir, name, <<~RUBY)
      class Night
        include Divvy::Parallelizable

        def dispatch
          Integer(ENV.fetch('ITEMS', '10')).times { |item| yield item }
        end

        def perform(item)
          if ENV['SLOW'] && item >= Integer(ENV['SLOW'])
            ENV['CHILD'] ? system('sleep', ENV['SLEEP']) || raise('its child was stopped') : sleep(Float(ENV['SLEEP']))
          end
          raise ArgumentError, "no \#{item}" if ENV.fetch('FAIL', '').split(',').include?(item.to_s)

          File.write(File.join(__dir__, 'performed'), "\#{item}\\n", mode: 'a')
        end
      end
    RUBY
  end

  def log_path(name = 'run.log')
    File.join(dir, name)
  end

  # The log's lines but the header, each a Hash of the header's columns.
  def records(path = log_path)
    header, *lines = File.readlines(path, chomp: true)
    expect(header.split("\t")).to eq(columns)
    lines.map { |line| columns.zip(line.split("\t", -1)).to_h }
  end

  # Item => its last outcome in the log.
  def outcomes(path = log_path)
    records(path).to_h { |record| [record['Seq'].to_i - 1, record['Outcome']] }
  end

  # The items performed so far, in the order they were, and forgets them.
  def performed!
    path = File.join(dir, 'performed')
    File.exist?(path) ? File.readlines(path).map(&:to_i).tap { File.delete(path) } : []
  end

  # The pids of the master `pid`'s workers.
  def workers_of(pid)
    `pgrep -P #{pid}`.split.map(&:to_i)
  end

  def run_divvy(*args, env: {})
    divvy(*args, env: env, chdir: dir)
  end

  describe 'its lines' do
    it "has a header naming GNU parallel's columns then divvy's, and a line per settled item" do
      result = run_divvy('-n', 2, '--retries', 1, '--joblog', 'run.log', write_task, env: { 'FAIL' => '3' })
      expect(result.status.exitstatus).to eq(1), result.stderr
      lines = File.readlines(log_path)
      expect(lines.first).to eq("#{columns.join("\t")}\n")
      expect(lines.drop(1).map { |line| line.count("\t") }.uniq).to eq([columns.size - 1])
      by_item = records.to_h { |record| [record['Seq'].to_i - 1, record] }
      expect(by_item.keys.sort).to eq((0...10).to_a)
      performed = by_item[4]
      expect(performed).to include('Host' => Socket.gethostname[0, 64], 'Command' => 'night.rb', 'Exitval' => '0',
                                   'Signal' => '0', 'Receive' => '0', 'Send' => Marshal.dump([4]).bytesize.to_s,
                                   'Outcome' => 'performed', 'Attempts' => '1', 'Reason' => '-', 'Error' => '-')
      expect(performed['Starttime'].to_f).to be_within(120).of(Time.now.to_f)
      expect(performed['JobRuntime']).to match(/\A\d+\.\d{3}\z/)
      expect(performed['Worker']).to match(/\A[12]\z/)
      expect(performed['Digest']).to match(/\A\h{16}\z/)
      expect(by_item.values.map { |record| record['Digest'] }.uniq.size).to eq(10)
      expect(by_item[3]).to include('Outcome' => 'failed', 'Exitval' => '1', 'Signal' => '0', 'Attempts' => '2',
                                    'Reason' => 'raised', 'Error' => 'ArgumentError: no 3')
    end

    it 'records the digest of the same item identically in another run' do
      2.times { run_divvy('-n', 2, '--joblog', 'run.log', write_task) }
      digests = records.group_by { |record| record['Seq'] }.transform_values { |same| same.map { |r| r['Digest'] } }
      expect(digests.values).to all(satisfy { |pair| pair.size == 2 && pair.uniq.size == 1 })
    end

    it 'appends across runs, under one header' do
      2.times do
        result = run_divvy('-n', 2, '--joblog', 'run.log', write_task)
        expect(result.status).to be_success, result.stderr
      end
      expect(File.readlines(log_path).count { |line| line.start_with?("Seq\t") }).to eq(1)
      expect(records.map { |record| record['Seq'].to_i }.tally).to eq((1..10).to_h { |seq| [seq, 2] })
      expect(performed!.size).to eq(20)
    end

    it "names a shard's log after it: before the extension, or at %s" do
      task = write_task
      expect(run_divvy('-n', 2, '--shard', '1/3', '--joblog', 'run.log', task).status).to be_success
      expect(run_divvy('-n', 2, '--shard', '2/3', '--joblog', 'logs-%s.tsv', task).status).to be_success
      expect(Dir.children(dir).grep(/log|tsv/).sort).to eq(%w[logs-2-of-3.tsv run.1-of-3.log])
      expect(outcomes(log_path('run.1-of-3.log')).keys.sort).to eq([1, 4, 7])
      expect(outcomes(log_path('logs-2-of-3.tsv')).keys.sort).to eq([2, 5, 8])
    end

    it 'cannot be written: one line, exit 1' do
      result = run_divvy('-n', 2, '--joblog', 'missing/run.log', write_task)
      expect(result.status.exitstatus).to eq(1)
      expect(result.stderr).to eq("divvy: cannot open the job log missing/run.log: No such file or directory (os error 2)\n")
    end

    it 'is not a regular file (a directory, a FIFO): one line, exit 1, no hang' do
      Dir.mkdir(File.join(dir, 'logs'))
      File.mkfifo(File.join(dir, 'fifo'))
      %w[logs fifo].each do |name|
        result = run_divvy('-n', 2, '--joblog', name, write_task)
        expect(result.status.exitstatus).to eq(1)
        expect(result.stderr).to eq("divvy: the job log #{name} is not a regular file; give --joblog a file name\n")
      end
    end

    it 'is kept by one run at a time: a second one stops in one line, and the log stays whole' do
      task = write_task
      env = { 'ITEMS' => '4', 'SLOW' => '2', 'SLEEP' => '30' }
      pid = spawn_divvy('-n', 2, '--joblog', log_path, '--resume', task, dir: dir, env: env)
      eventually { File.exist?(log_path) && records.size >= 2 }
      second = run_divvy('-n', 2, '--joblog', 'run.log', '--resume', task, env: env)
      expect(second.status.exitstatus).to eq(1)
      expect(second.stderr).to eq("divvy: the job log run.log is in use by another divvy run\n")
      workers = workers_of(pid)
      Process.kill(:KILL, pid)
      wait_for(pid)
      # They follow their master within a second (at once on Linux).
      eventually(timeout: 5) { workers.none? { |worker| ProcessHelpers.running?(worker) } }
      performed!
      third = run_divvy('-n', 2, '--joblog', 'run.log', '--resume', task, env: env.merge('SLOW' => '99'))
      expect(third.status).to be_success, third.stderr
      expect(performed!.sort).to eq([2, 3])
    end
  end

  describe '--resume' do
    it 'starts from the beginning when the log does not exist yet' do
      result = run_divvy('-n', 2, '--joblog', 'run.log', '--resume', write_task)
      expect(result.status).to be_success, result.stderr
      expect(performed!.sort).to eq((0...10).to_a)
      expect(outcomes.values).to all(eq('performed'))
    end

    it 'skips the items recorded as performed or failed, and counts them as skipped' do
      task = write_task
      run_divvy('-n', 2, '--joblog', 'run.log', task, env: { 'ITEMS' => '6', 'FAIL' => '2' })
      expect(performed!.sort).to eq([0, 1, 3, 4, 5])
      result = run_divvy('-v', '-n', 2, '--joblog', 'run.log', '--resume', '--progress', task)
      expect(result.status).to be_success, result.stderr
      expect(performed!.sort).to eq((6...10).to_a)
      expect(result.stderr).to include('divvy: 4 performed, 6 skipped, 0 failed, 0 retried')
      expect(result.stderr).to match(/^divvy: 4 done, 0 failed, 6 skipped, /)
      expect(outcomes).to eq((0...10).to_h { |item| [item, item == 2 ? 'failed' : 'performed'] })
    end

    it 'performs nothing again once every item is recorded' do
      task = write_task
      run_divvy('-n', 2, '--joblog', 'run.log', task)
      performed!
      result = run_divvy('-n', 2, '--joblog', 'run.log', '--resume', task)
      expect(result.status).to be_success, result.stderr
      expect(performed!).to eq([])
      expect(records.size).to eq(10)
    end

    it 'performs the items recorded as failed again with --resume-failed' do
      task = write_task
      run_divvy('-n', 2, '--joblog', 'run.log', task, env: { 'FAIL' => '2,7' })
      performed!
      result = run_divvy('-v', '-n', 2, '--joblog', 'run.log', '--resume-failed', task)
      expect(result.status).to be_success, result.stderr
      expect(performed!.sort).to eq([2, 7])
      expect(result.stderr).to include('divvy: 2 performed, 8 skipped, 0 failed')
      expect(outcomes.values).to all(eq('performed'))
    end

    it 'ignores a last line torn by a master killed while writing it' do
      task = write_task
      run_divvy('-n', 2, '--joblog', 'run.log', task, env: { 'ITEMS' => '5' })
      performed!
      whole = File.read(log_path)
      File.write(log_path, whole.lines.last[0, 20], mode: 'a')
      result = run_divvy('-n', 2, '--joblog', 'run.log', '--resume', task)
      expect(result.status).to be_success, result.stderr
      expect(performed!.sort).to eq((5...10).to_a)
      expect(File.read(log_path)).to start_with(whole)
      expect(records.size).to eq(10)
    end

    it 'does not record items in flight when TERM reaches the workers and the master at once (scancel)' do
      task = write_task
      env = { 'ITEMS' => '20', 'SLOW' => '6', 'SLEEP' => '30' }
      pid = spawn_divvy('-n', 3, '--joblog', log_path, '--resume', task, dir: dir, env: env)
      eventually { File.exist?(log_path) && records.size >= 6 }
      # Every process of the job at once, the workers first, as Slurm does.
      Process.kill(:TERM, *workers_of(pid), pid)
      expect(wait_for(pid).exitstatus).to eq(143)
      expect(outcomes).to eq((0...6).to_h { |item| [item, 'performed'] })
      performed!
      result = run_divvy('-n', 3, '--joblog', 'run.log', '--resume', task, env: env.merge('SLOW' => '99'))
      expect(result.status).to be_success, result.stderr
      expect(performed!.sort).to eq((6...20).to_a)
    end

    it 'does not record an item that failed because Ctrl-C stopped what it ran' do
      task = write_task
      env = { 'ITEMS' => '6', 'SLOW' => '4', 'SLEEP' => '30', 'CHILD' => '1' }
      pid = spawn_divvy('-n', 2, '--joblog', log_path, '--resume', task, dir: dir, env: env)
      eventually { File.exist?(log_path) && records.size >= 4 }
      sleep 0.3 # items 4 and 5 run their sleep
      Process.kill(:INT, pid) # the master sends it on to the workers' process groups
      expect(wait_for(pid).exitstatus).to eq(130)
      expect(outcomes).to eq((0...4).to_h { |item| [item, 'performed'] })
      performed!
      result = run_divvy('-n', 2, '--joblog', 'run.log', '--resume', task, env: env.merge('SLOW' => '99'))
      expect(result.status).to be_success, result.stderr
      expect(performed!.sort).to eq([4, 5])
    end

    it 'records an item whose worker a signal killed as failed when the run goes on' do
      task = write_task
      env = { 'ITEMS' => '2', 'SLOW' => '1', 'SLEEP' => '30' }
      pid = spawn_divvy('-n', 2, '--joblog', log_path, task, dir: dir, env: env)
      eventually { File.exist?(log_path) && records.size == 1 }
      sleep 0.2 # item 1 has started
      Process.kill(:TERM, *workers_of(pid))
      expect(wait_for(pid).exitstatus).to eq(1)
      expect(outcomes).to eq({ 0 => 'performed', 1 => 'failed' })
      expect(records.select { |record| record['Outcome'] == 'failed' })
        .to all(include('Signal' => '15', 'Exitval' => '0', 'Reason' => 'died'))
    end
  end

  describe 'a log that does not match' do
    it 'stops with one line when the item at an index changed since the log was written' do
      task = write_task
      run_divvy('-n', 2, '--joblog', 'run.log', task, env: { 'ITEMS' => '3' })
      File.write(task, File.read(task).sub('yield item', 'yield(item == 1 ? -1 : item)'))
      result = run_divvy('-n', 2, '--joblog', 'run.log', '--resume', task)
      expect(result.status.exitstatus).to eq(1)
      expect(result.stderr.lines.size).to eq(1), result.stderr
      expect(result.stderr).to match(
        /\Adivvy: dispatch changed since the job log run\.log was written: the item at dispatch index 1 \(Seq 2\) /
      )
      expect(result.stderr).not_to match(/panick|\.rs:/)
    end

    it 'refuses a file that is not a divvy job log, in one line, and leaves it alone' do
      File.write(log_path, "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n")
      result = run_divvy('-n', 2, '--joblog', 'run.log', '--resume', write_task)
      expect(result.status.exitstatus).to eq(1)
      expect(result.stderr.lines.size).to eq(1), result.stderr
      expect(result.stderr).to start_with("divvy: run.log is not a divvy job log: its first line is not divvy's header")
      expect(File.read(log_path).lines.size).to eq(1)
      expect(performed!).to eq([])
    end

    it 'refuses --resume and --resume-failed without --joblog: a usage error' do
      %w[--resume --resume-failed].each do |option|
        result = run_divvy('-n', 2, option, write_task)
        expect(result.status.exitstatus).to eq(2)
        expect(result.stderr.lines.first).to eq("divvy: #{option} needs --joblog FILE\n")
        expect(result.stderr).not_to match(/panick|\.rs:|\.rb:\d/)
      end
    end
  end

  describe 'from Ruby' do
    def run_ruby(code)
      result = ruby_code(<<~RUBY, chdir: dir)
        require 'divvy'
        require 'pathname'
        #{code}
      RUBY
      expect(result.status).to be_success, result.stderr
      result.stdout
    end

    it 'takes joblog: and resume: in Master.new, and counts skipped items in #items_skipped' do
      output = run_ruby(<<~RUBY)
        class Count
          include Divvy::Parallelizable
          def initialize(count) = @count = count
          def dispatch = @count.times { |item| yield item }
          def perform(item) = item
        end
        first = Divvy::Master.new(Count.new(4), 2, joblog: 'run.log', resume: true)
        first.run
        second = Divvy::Master.new(Count.new(7), 2, joblog: Pathname('run.log'), resume: true)
        second.run
        p [first.items_performed, first.items_skipped, second.items_performed, second.items_skipped]
      RUBY
      expect(output).to eq("[4, 0, 3, 4]\n")
      expect(outcomes.keys.sort).to eq((0...7).to_a)
    end

    it 'takes a joblog: name that is not UTF-8 byte for byte, as File.open does' do
      output = run_ruby(<<~RUBY)
        binary = "run-\\xFF.log".b
        latin1 = "caf\\xE9.log".dup.force_encoding(Encoding::ISO_8859_1)
        [binary, latin1].each do |name|
          Divvy.each(0...3, workers: 2, joblog: name) { |item| item }
          Divvy.each(0...4, workers: 2, joblog: name, resume: true) { |item| File.write('again', item.to_s) }
          puts File.readlines(name).size
        end
        puts File.read('again')
      RUBY
      expect(output).to eq("5\n5\n3\n")
      expect(Dir.children(dir).map(&:b)).to include("run-\xFF.log".b, "caf\xE9.log".b)
    end

    it 'takes resume: :failed, and a shard: names the log' do
      output = run_ruby(<<~RUBY)
        begin
          Divvy.each(0...6, workers: 2, joblog: 'run.log', shard: [0, 2], halt: 'never') { |item| raise 'no' if item == 2 }
        rescue Divvy::TaskError
          nil
        end
        Divvy.each(0...6, workers: 2, joblog: 'run.log', shard: [0, 2], resume: :failed) do |item|
          File.write('again', item.to_s)
        end
        puts File.read('again')
      RUBY
      expect(output).to eq("2\n")
      expect(outcomes(log_path('run.0-of-2.log'))).to eq({ 0 => 'performed', 2 => 'performed', 4 => 'performed' })
    end

    it 'Divvy.each skips what its log recorded' do
      output = run_ruby(<<~RUBY)
        Divvy.each(0...5, workers: 2, joblog: 'run.log') { |item| File.write("item-\#{item}", '') }
        Dir['item-*'].each { |file| File.delete(file) }
        Divvy.each(0...8, workers: 2, joblog: 'run.log', resume: true) { |item| File.write("item-\#{item}", '') }
        puts Dir['item-*'].sort
      RUBY
      expect(output.split).to eq(%w[item-5 item-6 item-7])
    end

    it 'Divvy.map records in the log, and refuses resume: (the log keeps no results) in one line' do
      output = run_ruby(<<~RUBY)
        p Divvy.map(1..3, workers: 2, joblog: 'run.log') { |item| item * 2 }
        begin
          Divvy.map(1..3, workers: 2, joblog: 'run.log', resume: true) { |item| item * 2 }
        rescue Divvy::Error => e
          puts e.message
        end
      RUBY
      expect(output).to eq("[2, 4, 6]\nDivvy.map cannot resume: a job log keeps no results, so the items it " \
                           "skipped would have none; use Divvy.each with resume:, or Divvy.map with joblog: alone\n")
      expect(records.size).to eq(3)
    end

    it 'refuses resume: without joblog:, with results:, and values it does not know' do
      output = run_ruby(<<~RUBY)
        task = Class.new { include Divvy::Parallelizable; def dispatch; end; def perform; end }.new
        [{ resume: true }, { joblog: 'run.log', resume: :maybe }, { joblog: 3 }, { joblog: '' },
         { joblog: 'run.log', resume: true, results: [] }].each do |options|
          Divvy::Master.new(task, 1, **options)
        rescue Divvy::Error => e
          puts e.message
        end
      RUBY
      expect(output.lines).to eq(["resume: needs joblog:, the job log to resume from\n",
                                  "resume must be true, false or :failed, got :maybe\n",
                                  "joblog must be a file name (a String or Pathname), got 3\n",
                                  "joblog must be a file name (a String or Pathname), got \"\"\n",
                                  'results: cannot go with resume: a job log keeps no results, so the items ' \
                                  "a resumed run skips would have none\n"])
    end
  end
end
