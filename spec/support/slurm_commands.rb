# frozen_string_literal: true

require 'open3'

# The Slurm client commands the specs run against a SlurmCluster (which
# includes this module and defines #env with its SLURM_CONF).
module SlurmCommands
  # Runs a Slurm client command against the cluster.
  #
  # @param command [Array<String>] the command and its arguments
  # @param env [Hash] more environment
  # @param unsetenv_others [Boolean] start the command with only `env` and
  #   SLURM_CONF as its environment
  # @return [String] its standard output
  # @raise [RuntimeError] when it fails, with its standard error
  def run(*command, env: {}, unsetenv_others: false)
    program = SlurmInstaller.find!(command.first)
    stdout, stderr, status = Open3.capture3(self.env.merge(env), program, *command.drop(1),
                                            unsetenv_others: unsetenv_others)
    raise "#{command.join(' ')} failed (#{status}): #{stderr.strip}" unless status.success?

    stdout
  end

  # Submits a batch script. The job gets only `env` and SLURM_CONF as its
  # environment (sbatch exports the submitter's), so the script must set
  # PATH and RUBYLIB itself, as under `--export=NONE`, without the seconds
  # Slurm spends loading a login environment for `--export=NONE`. Output
  # goes to log/JOB_TASK.out in the cluster's directory.
  #
  # @param script [String] the batch script's path
  # @param options [Array<String>] sbatch options (`--array=0-3`)
  # @param env [Hash{String => String}] the job's environment
  # @return [String] the job id
  def sbatch(script, *options, env: {})
    run('sbatch', '--parsable', "--output=#{File.join(dir, 'log', '%A_%a.out')}", *options, script,
        env: env, unsetenv_others: true).strip.split(';').first
  end

  # The queue's lines for `job` (a job id, or JOBID_TASKID): "ID STATE",
  # empty once every task ended.
  #
  # @param job [String] the job
  # @return [String]
  def squeue(job)
    run('squeue', '--noheader', '--jobs', job, '--format', '%i %T')
  end

  # Polls squeue until `job` has no task pending, running or completing:
  # it answers within 50 ms, where `sbatch --wait` checks every 10 s.
  #
  # @param job [String] the job, or JOBID_TASKID
  # @param timeout [Numeric] seconds before giving up
  # @return [void]
  # @raise [RuntimeError] after `timeout`, with squeue's view
  def wait_for_jobs(job, timeout: 60)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until (queue = squeue(job)).empty?
      late = Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      raise "job #{job} still queued after #{timeout}s:\n#{queue}" if late

      sleep 0.05
    end
  end

  # Each task's final state, from `scontrol show job` (Slurm keeps ended
  # jobs for MinJobAge, 300 s).
  #
  # @param job [String] the array job's id
  # @return [Hash{Integer => String}] array task id => "COMPLETED 0:0"
  def task_states(job)
    run('scontrol', '--oneliner', 'show', 'job', job).lines.to_h do |line|
      fields = line.split.to_h { |field| field.split('=', 2) }
      [fields['ArrayTaskId'].to_i, "#{fields['JobState']} #{fields['ExitCode']}"]
    end
  end

  # Puts an ended array task back in the queue and lets it start at once:
  # Slurm would otherwise hold it for the job credential's lifetime
  # (120 s). It waits for the next second first, since slurmd refuses a
  # task started in the second its credential was revoked ("Job credential
  # revoked": the task fails at once).
  #
  # @param task [String] JOBID_TASKID, a task that ended
  # @return [void]
  def requeue(task)
    run('scontrol', 'requeue', task)
    sleep(1 - (Time.now.to_f % 1))
    run('scontrol', 'update', "JobId=#{task}", 'StartTime=now')
  end

  # Cancels every job and waits until the queue is empty.
  #
  # @return [void]
  def cancel_everything
    jobs = run('squeue', '--noheader', '--format', '%i').split
    run('scancel', *jobs) unless jobs.empty?
    wait_for_jobs(jobs.join(','), timeout: 20) unless jobs.empty?
  end
end
