# frozen_string_literal: true

RSpec.describe 'signals' do
  # A script of `count` items that each take `seconds` and leave a start
  # and a done marker in MARKS.
  def slow_script(dir, count: 30, seconds: 1)
    write_script(dir, 'slow.rb', <<~RUBY)
      class Slow
        include Divvy::Parallelizable
        def dispatch; #{count}.times { |i| yield i }; end
        def perform(i)
          File.write(File.join(ENV.fetch('MARKS'), "start-\#{i}"), Process.pid.to_s)
          sleep #{seconds}
          File.write(File.join(ENV.fetch('MARKS'), "done-\#{i}"), Process.pid.to_s)
        end
      end
    RUBY
  end

  def marks(dir, kind)
    Dir[File.join(dir, 'marks', "#{kind}-*")].map { |path| path[/-(\d+)\z/, 1].to_i }.sort
  end

  # Starts the slow script on 3 workers and waits until the first items run.
  def start_slow_run(dir)
    Dir.mkdir(File.join(dir, 'marks'))
    pid = spawn_divvy('-n', 3, slow_script(dir), dir: dir, env: { 'MARKS' => File.join(dir, 'marks') })
    eventually { marks(dir, 'start').size == 3 }
    pid
  end

  def seconds
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    yield
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  end

  it 'finishes the items in flight and starts none on Ctrl-C (INT to the whole process group)' do
    Dir.mktmpdir do |dir|
      pid = start_slow_run(dir)
      started_before = marks(dir, 'start')
      status = nil
      elapsed = seconds do
        Process.kill(:INT, -pid)
        status = wait_for(pid)
      end
      expect(status.exitstatus).to eq(130)
      expect(marks(dir, 'start')).to eq(started_before)
      expect(marks(dir, 'done')).to eq(started_before)
      expect(elapsed).to be < 5
      expect(File.read(File.join(dir, 'stderr'))).to match(/stopped by SIGINT after the items in flight finished/)
    end
  end

  # Workers still in after_fork, which put INT back to its default: the INT
  # the master passes on ends them, as the user asked, and is no boot
  # failure.
  it 'drains on INT while workers whose after_fork trapped INT still boot' do
    Dir.mktmpdir do |dir|
      booting = File.join(dir, 'booting')
      Dir.mkdir(booting)
      script = write_script(dir, 'boot_int.rb', <<~RUBY)
        class BootInt
          include Divvy::Parallelizable
          def dispatch; 10.times { |i| yield i }; end
          def after_fork(_worker)
            trap('INT', 'DEFAULT')
            File.write(File.join(#{booting.inspect}, Process.pid.to_s), '')
            sleep 10
          end
          def perform(_item); end
        end
      RUBY
      pid = spawn_divvy('-n', 3, script, dir: dir)
      eventually { Dir.children(booting).size == 3 }
      Process.kill(:INT, pid)
      status = wait_for(pid)
      stderr = File.read(File.join(dir, 'stderr'))
      expect(status.exitstatus).to eq(130), stderr
      expect(stderr).not_to match(/before it was ready|failed to boot/)
    end
  end

  it 'drains on INT sent to the master alone' do
    Dir.mktmpdir do |dir|
      pid = start_slow_run(dir)
      Process.kill(:INT, pid)
      status = wait_for(pid)
      expect(status.exitstatus).to eq(130)
      expect(marks(dir, 'done')).to eq(marks(dir, 'start'))
      expect(marks(dir, 'start').size).to be < 30
    end
  end

  it 'drains on QUIT like INT' do
    Dir.mktmpdir do |dir|
      pid = start_slow_run(dir)
      Process.kill(:QUIT, pid)
      expect(wait_for(pid).exitstatus).to eq(131)
      expect(marks(dir, 'done')).to eq(marks(dir, 'start'))
    end
  end

  it 'stops at once on a second INT, killing the workers' do
    Dir.mktmpdir do |dir|
      pid = start_slow_run(dir)
      started = marks(dir, 'start')
      Process.kill(:INT, pid)
      sleep 0.1
      Process.kill(:INT, pid)
      expect(wait_for(pid).exitstatus).to eq(130)
      expect(marks(dir, 'done')).to be_empty.or(satisfy { |done| done.size < started.size })
      expect(File.read(File.join(dir, 'stderr'))).to match(/stopped by SIGINT at once/)
    end
  end

  it 'stops at once on TERM' do
    Dir.mktmpdir do |dir|
      pid = start_slow_run(dir)
      status = nil
      elapsed = seconds do
        Process.kill(:TERM, pid)
        status = wait_for(pid)
      end
      expect(status.exitstatus).to eq(143)
      expect(marks(dir, 'done')).to be_empty
      expect(elapsed).to be < 5
      expect(File.read(File.join(dir, 'stderr'))).to match(/stopped by SIGTERM at once: 3 items sent, 0 performed/)
    end
  end

  # The master's fork timer sends it SIGURG; a SIGURG from elsewhere (the
  # kernel sends one for a socket's out-of-band data) must not give up a
  # fork that is not overdue.
  it 'goes on when SIGURG comes from elsewhere while it forks' do
    Dir.mktmpdir do |dir|
      Dir.mkdir(File.join(dir, 'marks'))
      script = slow_script(dir, count: 60, seconds: 0)
      pid = spawn_divvy('-n', 30, script, dir: dir, env: { 'MARKS' => File.join(dir, 'marks') })
      status = nil
      until status
        begin
          Process.kill(:URG, pid)
        rescue Errno::ESRCH
          nil
        end
        sleep 0.0002
        status = Process.wait2(pid, Process::WNOHANG)&.last
      end
      expect(status).to be_success, File.read(File.join(dir, 'stderr'))
      expect(marks(dir, 'done').size).to eq(60)
    end
  end

  it 'leaves no worker behind when the master is killed with SIGKILL' do
    Dir.mktmpdir do |dir|
      pid = start_slow_run(dir)
      workers = marks(dir, 'start').map { |i| File.read(File.join(dir, 'marks', "start-#{i}")).to_i }
      Process.kill(:KILL, pid)
      wait_for(pid)
      expect(workers.size).to eq(3)
      eventually(timeout: 1) { workers.none? { |worker| ProcessHelpers.running?(worker) } }
    end
  end

  it 'lets a worker sent INT finish its item and be replaced' do
    Dir.mktmpdir do |dir|
      script = slow_script(dir, count: 6, seconds: 0.5)
      Dir.mkdir(File.join(dir, 'marks'))
      pid = spawn_divvy('-v', '-n', 2, script, dir: dir, env: { 'MARKS' => File.join(dir, 'marks') })
      eventually { marks(dir, 'start').size >= 1 }
      marker = File.join(dir, 'marks', "start-#{marks(dir, 'start').first}")
      eventually { File.size(marker).positive? }
      Process.kill(:INT, File.read(marker).to_i)
      expect(wait_for(pid).exitstatus).to eq(0)
      expect(marks(dir, 'done')).to eq((0...6).to_a)
      expect(File.read(File.join(dir, 'stderr')).scan(/started/).size).to eq(3)
    end
  end

  # A worker still inside Process.fork runs the master's traps (it has not
  # installed its own): a signal there must end that worker only. Before,
  # the trap raised out of the worker's fork, and the worker went on as a
  # second master and panicked at its end.
  %w[TERM INT].each do |signal|
    it "ends only the new worker when #{signal} reaches it inside Process.fork" do
      Dir.mktmpdir do |dir|
        expect_each_item_once(divvy_with_fork_wrapper(dir, "Process.kill('#{signal}', Process.pid); sleep 1"))
      end
    end
  end

  # The other worker performs every item first, and the run tells both to
  # leave: the death is still one before the worker was ready, reported
  # and counted. Before, it passed for a worker leaving as told.
  it 'reports a worker that TERM ends inside Process.fork after the items are done' do
    Dir.mktmpdir do |dir|
      result = divvy_with_fork_wrapper(dir, "sleep 0.5; Process.kill('TERM', Process.pid); sleep 1")
      expect_each_item_once(result)
      expect(result.stderr).to match(/^divvy: worker \d \(pid \d+\) died by SIGTERM before it was ready$/)
    end
  end
end
