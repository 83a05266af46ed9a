# frozen_string_literal: true

require_relative 'spec_helper'

# The job log against a master killed outright (SIGKILL: no trap, no
# flush, no goodbye) at random moments, rerun with --resume until a run
# exits 0, as a night's batch on a flaky machine would be.
RSpec.describe 'the job log when the master is killed' do
  let(:items) { 2_000 }
  let(:workers) { 3 }
  # How long before a kill an item may have been performed and still be
  # missing from the log: the answer's trip (a worker batches answers for
  # up to 8 ms, or longer while its next item runs: then the master records
  # it from the worker's counter within 100 ms), a turn of the master's
  # loop, and the writer thread's 2 ms interval. Measured when answers
  # were batched for 2 ms: at most 0.006 s
  # (13 to 19 items performed again over 6 kills of 2,000 items, 1 to 3 of
  # them in flight) on 2 shared cores; the bound leaves room for a slower
  # machine.
  let(:flush_bound) { 0.5 }

  around do |example|
    Dir.mktmpdir('divvy-chaos-') do |dir|
      @dir = dir
      example.run
    end
  end

  attr_reader :dir

  # Each perform sleeps `seconds` (Ruby code of `item`; a few ms) and
  # appends "ITEM RUN TIME" to a file; with `fork_seconds`, before_fork
  # sleeps that long, so that forking many workers takes a while.
  def write_task(seconds: '0.001 + (item % 5) * 0.001', fork_seconds: nil)
    before_fork = fork_seconds && "def before_fork(_) = sleep(#{fork_seconds})"
    write_script(dir, 'night.rb', <<~RUBY)
      class Night
        include Divvy::Parallelizable

        def dispatch
          #{items}.times { |item| yield item }
        end
        #{before_fork}

        def perform(item)
          sleep(#{seconds})
          line = "\#{item} \#{ENV['RUN']} \#{Process.clock_gettime(Process::CLOCK_REALTIME)}\\n"
          File.write(File.join(__dir__, 'performed'), line, mode: 'a')
        end
      end
    RUBY
  end

  # The items the log records as performed (none before it exists).
  def logged
    return [] unless File.exist?(File.join(dir, 'run.log'))

    File.readlines(File.join(dir, 'run.log'), chomp: true).drop(1).filter_map do |line|
      fields = line.split("\t")
      fields[0].to_i - 1 if fields.size == 15 && fields[10] == 'performed'
    end
  end

  # [item, run, time] of every perform so far.
  def performs
    File.readlines(File.join(dir, 'performed')).map do |line|
      item, run, time = line.split
      [item.to_i, run.to_i, time.to_f]
    end
  end

  it 'performs every item, never one the log recorded as performed, and again only what was in flight' do
    script = write_task
    log = File.join(dir, 'run.log')
    kills = {} # run => [wall-clock time of the kill, items logged after it]
    run = 0
    loop do
      run += 1
      pid = spawn_divvy('-n', workers, '--joblog', log, '--resume', script, dir: dir, env: { 'RUN' => run.to_s })
      if run <= 6
        sleep(rand(0.15..0.6))
        killed_at = Process.clock_gettime(Process::CLOCK_REALTIME)
        Process.kill(:KILL, pid)
        Process.wait(pid)
        # Its workers die with it: none lingers into the next run.
        eventually(timeout: 10) { ProcessHelpers.live_tagged_processes(ProcessHelpers.current_tag).empty? }
        kills[run] = [killed_at, logged]
        next
      end
      status = wait_for(pid)
      break if status.success?

      raise "run #{run} exited #{status.exitstatus}: #{File.read(File.join(dir, 'stderr'))}" if run > 12
    end

    done = performs
    expect(done.map(&:first).uniq.sort).to eq((0...items).to_a)
    expect(logged.uniq.sort).to eq((0...items).to_a)

    first_logged = {}
    kills.each { |killed_run, (_, items)| items.each { |item| first_logged[item] ||= killed_run } }
    again = done.select { |item, by_run, _| first_logged[item] && by_run > first_logged[item] }
    expect(again).to be_empty, 'an item the log recorded as performed was performed again'

    # Every item performed more than once was performed, in a killed run,
    # after the kill (in flight: its worker had it) or within flush_bound
    # before it, and the log of that run missed it.
    repeated = done.group_by(&:first).select { |_, runs| runs.size > 1 }
    lags = repeated.flat_map do |_, runs|
      runs.sort_by { |_, by_run, _| by_run }[0...-1].map do |_, by_run, time|
        killed_at, = kills.fetch(by_run)
        killed_at - time
      end
    end
    expect(lags).to all(be < flush_bound)
    # Performed after the kill: each worker's item under way (the Linux
    # build's workers die with the master); on the portable build, which
    # has no parent-death signal, also what a worker goes on performing
    # until its next write of answers fails, at most 8 ms of items of 1 ms
    # or more after the last one (its parent watch looks every 200 ms).
    in_flight_bound = kills.size * workers * (ENV['PORTABLE'] == '1' ? 10 : 1)
    before_kill = lags.count(&:positive?)
    expect(lags.size - before_kill).to be <= in_flight_bound
  end

  # The writer thread starts once every worker has forked (a process that
  # ran a thread forks slower workers); until then the master writes the
  # records itself, so a kill while it still forks loses no more.
  it 'records what settled while the workers are still being forked' do
    script = write_task(seconds: 0.01, fork_seconds: 0.1)
    log = File.join(dir, 'run.log')
    pid = spawn_divvy('-n', 12, '--joblog', log, script, dir: dir, env: { 'RUN' => '1' })
    sleep 0.9
    killed_at = Process.clock_gettime(Process::CLOCK_REALTIME)
    Process.kill(:KILL, pid)
    Process.wait(pid)
    eventually(timeout: 10) { ProcessHelpers.live_tagged_processes(ProcessHelpers.current_tag).empty? }
    settled = performs.select { |_, _, time| time < killed_at - flush_bound }.map(&:first)
    expect(settled).not_to be_empty
    expect(logged).to include(*settled)
  end
end
