# frozen_string_literal: true

# A fork that fails: reported in one line, the run goes on with the workers
# it has, stops with a clear error when it has none, and obeys signals at
# every moment. Process limits bind only an unprivileged user, so these
# run the command as one (a user id no one else uses) under `ulimit -u`.
RSpec.describe 'a fork that fails' do
  # A user id of its own: the limit counts every process of the user.
  let(:uid) { 53_211 }

  before do
    skip 'needs root to run the command as another user' unless Process.uid.zero?
  end

  # A script of `count` items of `seconds` each, in a directory the user
  # can read.
  def slow_script(dir, count:, seconds:)
    File.chmod(0o755, dir)
    write_script(dir, 'slow.rb', <<~RUBY).tap { |path| File.chmod(0o644, path) }
      class Slow
        include Divvy::Parallelizable
        def dispatch = #{count}.times { |i| yield i }
        def perform(_) = sleep(#{seconds})
      end
    RUBY
  end

  # The command line running `divvy ARGS` as UID with at most `processes`
  # processes.
  def limited(processes, *args)
    command = ['ruby', File.join(ROOT, 'exe', 'divvy'), *args.map(&:to_s)].join(' ')
    ['setpriv', "--reuid=#{uid}", "--regid=#{uid}", '--clear-groups',
     'bash', '-c', "ulimit -u #{processes} && exec #{command}"]
  end

  it 'says so in one line and goes on with the workers it has' do
    Dir.mktmpdir do |dir|
      result = run_command(limited(8, '-n', 20, slow_script(dir, count: 40, seconds: 0.05)), chdir: '/')
      expect(result.status).to be_success, result.stderr
      lines = result.stderr.lines
      expect(lines.size).to eq(1), result.stderr
      expect(lines.first).to match(/\Adivvy: cannot fork worker \d+: .*Resource temporarily unavailable.*; going on with \d+ workers?\n\z/)
    end
  end

  # The portable build's fork timer is a thread, which the limit refuses
  # before any fork; on Linux the first fork keeps failing.
  it 'stops with a clear error when it cannot start at all' do
    Dir.mktmpdir do |dir|
      result = run_command(limited(1, '-n', 2, slow_script(dir, count: 4, seconds: 0)), chdir: '/')
      expect(result.exitstatus).to eq(1)
      expect(result.stderr).to match(
        /\Adivvy: (cannot start a run|cannot fork a worker, and none runs): .*Resource temporarily unavailable.*\n\z/
      )
    end
  end

  it 'obeys TERM while a fork keeps failing' do
    Dir.mktmpdir do |dir|
      script = slow_script(dir, count: 400, seconds: 0.2)
      outputs = { out: File.join(dir, 'out'), err: File.join(dir, 'err') }
      pid = spawn(spec_env, *limited(8, '-n', 20, script), **outputs, chdir: '/')
      # The limit counts threads too, and how many a worker runs depends on
      # the build (the portable one watches the master from a thread) and
      # on Ruby's version: once no worker has started for 0.4 s, the next
      # fork is stuck.
      counts = []
      eventually do
        counts << `pgrep -u #{uid} -c -f 'divvy worker'`.to_i
        sleep 0.08
        counts.size > 5 && counts.last >= 2 && counts.last(5).uniq.size == 1
      end
      expect(File.read(File.join(dir, 'err'))).not_to include('cannot fork')
      master = `pgrep -u #{uid} -f 'divvy master'`.to_i
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Process.kill(:TERM, master)
      expect(wait_for(pid).exitstatus).to eq(143)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 10
      expect(File.read(File.join(dir, 'err'))).to match(/stopped by SIGTERM at once/)
    end
  end

  # On Linux a kernel timer times each fork; past the user's limit of
  # pending signals (`ulimit -i`) the kernel makes none, and the master
  # times its forks from a thread instead of refusing to run.
  it 'runs where the kernel makes no timer (ulimit -i 0)' do
    code = "require 'divvy'; p Divvy.map([1, 2, 3], workers: 2) { |i| i * 2 }"
    result = run_command(['bash', '-c', 'ulimit -i 0 && exec "$@"', 'bash', 'ruby', '-e', code])
    expect(result.status).to be_success, result.stderr
    expect(result.stdout).to eq("[2, 4, 6]\n")
  end

  # A gem's after-fork callback (ActiveSupport's fork tracker, for one) runs
  # inside Process.fork in the new worker; when it raises there, the worker
  # must leave. Before, the exception reached the master's code in the
  # worker, which went on as a second master and panicked at its end.
  it 'ends only the new worker when Process.fork raises in it' do
    Dir.mktmpdir do |dir|
      result = divvy_with_fork_wrapper(dir, "raise 'an after-fork callback failed'")
      expect_each_item_once(result)
      expect(result.stderr).to match(/^divvy: worker \d: Process.fork raised in the new worker: RuntimeError: an after-fork callback failed$/)
    end
  end
end
