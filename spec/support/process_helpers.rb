# frozen_string_literal: true

# Helpers that start divvy as users do (the divvy command, or a Ruby script
# that requires divvy) and watch the processes they leave.
module ProcessHelpers
  # The outcome of a command: its output streams, status and wall time.
  Result = Struct.new(:stdout, :stderr, :status, :seconds, keyword_init: true) do
    # Returns the exit status number.
    def exitstatus
      status.exitstatus
    end
  end

  # Hard bound on any spawned command: catches hangs, times nothing.
  COMMAND_TIMEOUT = 60

  class << self
    attr_reader :current_tag

    # Runs the block with a fresh tag exported to every process started in it.
    def with_spec_tag
      @current_tag = SecureRandom.hex(8)
      ENV['DIVVY_SPEC_TAG'] = @current_tag
      yield
    ensure
      ENV.delete('DIVVY_SPEC_TAG')
    end

    # True when `pid` is a process that has not exited (zombies have).
    def running?(pid)
      File.read("/proc/#{pid}/stat")[/\) (\S)/, 1] != 'Z'
    rescue Errno::ENOENT, Errno::ESRCH
      false
    end

    # Returns the pids of live (not zombie) processes whose environment
    # carries `tag`.
    def live_tagged_processes(tag)
      return [] unless tag

      Dir.glob('/proc/[0-9]*').filter_map do |dir|
        pid = File.basename(dir).to_i
        next if pid == Process.pid
        next unless File.read("#{dir}/environ").include?("DIVVY_SPEC_TAG=#{tag}")

        pid if running?(pid)
      rescue Errno::ENOENT, Errno::EACCES, Errno::ESRCH
        nil
      end
    end
  end

  # The environment for spawned commands.
  def spec_env(extra = {})
    { 'DIVVY_SPEC_TAG' => ProcessHelpers.current_tag, 'RUBYLIB' => File.join(ROOT, 'lib') }.merge(extra)
  end

  # Runs `divvy ARGS` from the checkout and waits for it.
  def divvy(*args, env: {}, chdir: ROOT)
    run_command(['ruby', File.join(ROOT, 'exe', 'divvy'), *args.map(&:to_s)], env: env, chdir: chdir)
  end

  # Runs Ruby `code` in a new process with divvy on the load path.
  def ruby_code(code, env: {}, chdir: ROOT)
    run_command(['ruby', '-e', code], env: env, chdir: chdir)
  end

  # Runs `command` and returns a Result; fails the example after
  # COMMAND_TIMEOUT seconds.
  def run_command(command, env: {}, chdir: ROOT)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    stdout, stderr, status = Timeout.timeout(COMMAND_TIMEOUT) do
      Open3.capture3(spec_env(env), *command, chdir: chdir)
    end
    Result.new(stdout: stdout, stderr: stderr, status: status,
               seconds: Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)
  end

  # Runs `command` like run_command, for commands that may take minutes (a
  # cargo build), in its own process group: kills the group and fails the
  # example after `timeout` seconds.
  def run_long_command(command, timeout:, env: {}, chdir: ROOT)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Open3.popen3(spec_env(env), *command, chdir: chdir, pgroup: true) do |stdin, stdout, stderr, waiter|
      stdin.close
      readers = [stdout, stderr].map { |io| Thread.new { io.read } }
      kill_group(waiter, "#{command.join(' ')} did not finish within #{timeout}s") unless waiter.join(timeout)
      Result.new(stdout: readers[0].value, stderr: readers[1].value, status: waiter.value,
                 seconds: Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)
    end
  end

  # Kills the process group `waiter` leads, reaps its leader and raises
  # `message`.
  def kill_group(waiter, message)
    begin
      Process.kill(:KILL, -waiter.pid)
    rescue Errno::ESRCH
      nil # it ended just now
    end
    waiter.join
    raise message
  end

  # Starts `divvy ARGS` in the background in its own process group, as a
  # terminal would, with output to files in `dir`. Returns the pid.
  def spawn_divvy(*args, dir:, env: {})
    spawn(spec_env(env), 'ruby', File.join(ROOT, 'exe', 'divvy'), *args.map(&:to_s),
          out: File.join(dir, 'stdout'), err: File.join(dir, 'stderr'), pgroup: true, chdir: ROOT)
  end

  # Waits for `pid` and returns its Process::Status; fails after
  # COMMAND_TIMEOUT seconds.
  def wait_for(pid)
    Timeout.timeout(COMMAND_TIMEOUT) { Process.wait2(pid).last }
  end

  # Waits until the block is true, polling; fails after `timeout` seconds.
  def eventually(timeout: 20)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until yield
      raise "condition not met within #{timeout}s" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
  end

  # Writes a divvy script named `name` into `dir` and returns its path.
  def write_script(dir, name, body)
    path = File.join(dir, name)
    File.write(path, "require 'divvy'\n#{body}")
    path
  end
end
