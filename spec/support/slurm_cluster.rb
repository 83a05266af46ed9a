# frozen_string_literal: true

require 'fileutils'
require 'open3'
require 'socket'
require 'tmpdir'
require_relative 'slurm_installer'
require_relative 'slurm_config'
require_relative 'slurm_commands'

# A real one-node Slurm cluster on this machine, for the specs: Debian's
# munged, slurmctld and slurmd (installed when missing, see SlurmInstaller),
# configured under a temporary directory (see SlurmConfig), each started in
# the foreground so that its pid is ours to stop.
#
#   cluster = SlurmCluster.start     # raises SlurmInstaller::Unavailable
#   job = cluster.sbatch(script, '--array=0-3')
#   cluster.wait_for_jobs(job)
#   cluster.stop
class SlurmCluster
  include SlurmCommands

  # How long the daemons may take to bring the node up.
  START_TIMEOUT = 30
  # How long a daemon may take to exit after TERM, before KILL.
  STOP_TIMEOUT = 5

  # @return [String] the temporary directory holding everything
  attr_reader :dir
  # @return [String] the node's name (the short host name)
  attr_reader :node
  # @return [Float] seconds spent installing packages (0 when they were there)
  attr_reader :install_seconds
  # @return [Float] seconds from starting munged to the node idle in sinfo
  attr_reader :start_seconds

  # Installs the packages when missing, writes the configuration, starts
  # munged, slurmctld and slurmd, and waits until sinfo shows the node idle.
  #
  # @return [SlurmCluster] the running cluster
  # @raise [SlurmInstaller::Unavailable] when it cannot be installed or
  #   started (after stopping whatever it started)
  def self.start
    install_seconds = SlurmInstaller.ensure_installed
    new(install_seconds).tap(&:boot)
  end

  # Use SlurmCluster.start.
  def initialize(install_seconds)
    @install_seconds = install_seconds
    @node = Socket.gethostname.split('.').first
    @dir = Dir.mktmpdir('divvy-slurm-')
    File.chmod(0o755, @dir) # munged wants its socket's directories open to all
    @pids = {}
  end

  # Starts the daemons and waits for the node; stops them on failure.
  #
  # @return [void]
  # @raise [SlurmInstaller::Unavailable] with the daemons' last log lines
  def boot
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    SlurmConfig.write(@dir, @node)
    start_munged
    start_daemon(:slurmctld, '-D', '-i', '-f', path('slurm.conf'))
    start_daemon(:slurmd, '-D', '-f', path('slurm.conf'), '-N', @node)
    wait_until_idle
    @start_seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  rescue StandardError => e
    failure = "#{e.message}\n#{logs}"
    stop
    raise SlurmInstaller::Unavailable, "Slurm did not start: #{failure}"
  end

  # The environment for Slurm client commands.
  #
  # @return [Hash{String => String}]
  def env
    { 'SLURM_CONF' => path('slurm.conf') }
  end

  # The last lines of the daemons' logs and of the jobs' output, to explain
  # a failure.
  #
  # @return [String]
  def logs
    Dir[path('log', '*')].map do |file|
      "==> #{File.basename(file)}\n#{File.readlines(file).last(15).join}"
    end.join("\n")
  end

  # Cancels the jobs still queued, stops slurmd, slurmctld and munged by
  # their pids, kills any slurmstepd left, and removes the directory.
  #
  # @return [void]
  def stop
    begin
      cancel_everything if @start_seconds
    rescue StandardError
      nil # stopping the daemons and kill_strays below end the rest
    end
    %i[slurmd slurmctld munged].each { |daemon| stop_daemon(daemon) }
    kill_strays
    FileUtils.rm_rf(@dir)
  end

  private

  def path(*parts)
    File.join(@dir, *parts)
  end

  def start_munged
    start_daemon(:munged, '-F', "--socket=#{path('munge', 'socket')}", "--key-file=#{path('munge', 'munge.key')}",
                 "--pid-file=#{path('munge', 'munged.pid')}", "--seed-file=#{path('munge', 'seed')}",
                 "--log-file=#{path('log', 'munged.log')}")
    wait_for("munged's socket") { File.socket?(path('munge', 'socket')) }
  end

  # Spawns a daemon in the foreground, in its own process group, with its
  # output in log/NAME.out. DIVVY_SLURM_CLUSTER marks it and the slurmstepd
  # it forks, for kill_strays.
  def start_daemon(name, *args)
    @pids[name] = spawn(env.merge('DIVVY_SLURM_CLUSTER' => @dir), SlurmInstaller.find!(name.to_s), *args,
                        out: path('log', "#{name}.out"), err: %i[child out], pgroup: true)
  end

  def wait_until_idle
    wait_for("node #{@node} idle in sinfo") do
      @pids.each { |name, pid| raise "#{name} exited" if Process.waitpid(pid, Process::WNOHANG) }
      state, _errors, _status = Open3.capture3(env, SlurmInstaller.find!('sinfo'), '--noheader', '--nodes', @node,
                                               '--format', '%t')
      state.strip == 'idle'
    end
  end

  def wait_for(what)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + START_TIMEOUT
    until yield
      raise "no #{what} after #{START_TIMEOUT}s" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  # TERM, then KILL after STOP_TIMEOUT; reaps the daemon.
  def stop_daemon(name)
    pid = @pids.delete(name) or return
    Process.kill(:TERM, pid)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + STOP_TIMEOUT
    until Process.waitpid(pid, Process::WNOHANG)
      Process.kill(:KILL, pid) if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.02
    end
  rescue Errno::ESRCH, Errno::ECHILD
    nil # it had exited and was reaped
  end

  # Kills, by pid, any process still marked as this cluster's (a slurmstepd
  # whose job outlived the cancel).
  def kill_strays
    Dir.glob('/proc/[0-9]*').each do |proc_dir|
      next unless File.read("#{proc_dir}/environ").include?("DIVVY_SLURM_CLUSTER=#{@dir}\0")

      Process.kill(:KILL, File.basename(proc_dir).to_i)
    rescue Errno::ENOENT, Errno::EACCES, Errno::ESRCH
      nil # it ended meanwhile, or is not ours to read
    end
  end
end
