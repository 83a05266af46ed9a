# frozen_string_literal: true

# A job's own children: each worker leads a process group of its own, and
# what a perform starts is stopped with its worker, whatever ends it.
RSpec.describe 'a job\'s children' do
  # A script whose items each start `sleep 30` (through a shell, as
  # `system` does) and record their pid in MARKS.
  def sleeper_script(dir, count: 4, wait: true)
    write_script(dir, 'sleeper.rb', <<~RUBY)
      class Sleeper
        include Divvy::Parallelizable
        def dispatch; #{count}.times { |i| yield i }; end
        def perform(i)
          pid = Process.spawn('sleep', '30', out: File::NULL, err: File::NULL)
          File.write(File.join(ENV.fetch('MARKS'), "child-\#{i}"), pid.to_s)
          #{wait ? 'Process.wait(pid)' : 'Process.detach(pid)'}
        end
      end
    RUBY
  end

  def children(dir)
    Dir[File.join(dir, 'marks', 'child-*')].map { |path| File.read(path).to_i }.select(&:positive?)
  end

  # The processes this example started that are still alive, the test
  # runner itself left aside.
  def leftovers
    ProcessHelpers.live_tagged_processes(ProcessHelpers.current_tag)
  end

  def marks_env(dir)
    Dir.mkdir(File.join(dir, 'marks'))
    { 'MARKS' => File.join(dir, 'marks') }
  end

  it 'stops what a timed-out perform started' do
    Dir.mktmpdir do |dir|
      result = divvy('-n', 2, '--timeout', '0.5', sleeper_script(dir, count: 2), env: marks_env(dir))
      expect(result.exitstatus).to eq(1)
      expect(result.stderr.scan(/timed out after 0.5s/).size).to eq(2)
      expect(children(dir).size).to eq(2)
      eventually(timeout: 5) { leftovers.empty? }
    end
  end

  it 'stops what the performs started when the master gets TERM' do
    Dir.mktmpdir do |dir|
      pid = spawn_divvy('-n', 2, sleeper_script(dir), dir: dir, env: marks_env(dir))
      eventually { children(dir).size == 2 }
      Process.kill(:TERM, pid)
      expect(wait_for(pid).exitstatus).to eq(143)
      eventually(timeout: 5) { leftovers.empty? }
    end
  end

  it 'stops what the performs started on a second Ctrl-C, and lets Ctrl-C reach them' do
    Dir.mktmpdir do |dir|
      pid = spawn_divvy('-n', 2, sleeper_script(dir), dir: dir, env: marks_env(dir))
      eventually { children(dir).size == 2 }
      Process.kill(:INT, -pid) # a terminal's Ctrl-C: the master's process group
      sleep 0.2
      Process.kill(:INT, -pid)
      expect(wait_for(pid).exitstatus).to eq(130)
      eventually(timeout: 5) { leftovers.empty? }
    end
  end

  it 'sends a terminal\'s Ctrl-C on to the workers and what they started' do
    Dir.mktmpdir do |dir|
      pid = spawn_divvy('-n', 2, sleeper_script(dir), dir: dir, env: marks_env(dir))
      eventually { children(dir).size == 2 }
      Process.kill(:INT, -pid)
      status = wait_for(pid)
      # The sleeps got the INT and ended, so their items finished at once.
      expect(status.exitstatus).to eq(130)
      expect(File.read(File.join(dir, 'stderr'))).to match(/stopped by SIGINT after the items in flight finished/)
      eventually(timeout: 5) { leftovers.empty? }
    end
  end

  it 'stops what a perform started and did not wait for, once its worker is done' do
    Dir.mktmpdir do |dir|
      result = divvy('-n', 2, sleeper_script(dir, count: 3, wait: false), env: marks_env(dir))
      expect(result.status).to be_success, result.stderr
      expect(children(dir).size).to eq(3)
      eventually(timeout: 5) { leftovers.empty? }
    end
  end

  it 'leaves nothing of its jobs behind when the master is killed with SIGKILL' do
    Dir.mktmpdir do |dir|
      pid = spawn_divvy('-n', 2, sleeper_script(dir), dir: dir, env: marks_env(dir))
      eventually { children(dir).size == 2 }
      Process.kill(:KILL, pid)
      wait_for(pid)
      eventually(timeout: 2) { leftovers.empty? }
    end
  end

  it 'puts each worker in a process group of its own' do
    result = ruby_code(<<~RUBY)
      require 'divvy'
      groups = Divvy.map(1..4, workers: 2) { sleep 0.05; [Process.pid, Process.getpgrp] }
      p [groups.all? { |pid, group| pid == group }, groups.map(&:last).include?(Process.getpgrp)]
    RUBY
    expect(result.stdout).to eq("[true, false]\n"), result.stderr
  end
end
