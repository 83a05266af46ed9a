# frozen_string_literal: true

require_relative 'spec_helper'
require 'rbconfig'

# divvy on a real one-node Slurm cluster (spec/support/slurm_cluster.rb):
# an array job whose tasks each run their own shard (`--shard auto`), one of
# them cancelled mid-run and requeued, resuming from its job log. Skipped
# where Slurm cannot be installed or started.
RSpec.describe 'Slurm array jobs' do
  before(:all) do
    @cluster = SlurmCluster.start
  rescue SlurmInstaller::Unavailable => e
    @unavailable = e.message
  end

  after(:all) { @cluster&.stop }

  before { skip("Slurm is unavailable here: #{@unavailable}") if @unavailable }

  after { @cluster&.cancel_everything }

  around do |example|
    Dir.mktmpdir('divvy-slurm-job-') do |dir|
      File.chmod(0o755, dir)
      @dir = dir
      example.run
    end
  end

  attr_reader :cluster, :dir

  # The environment a job starts with: this spec's tag (so that the check
  # for leftover processes sees the job's) and the output directory.
  def job_env
    { 'DIVVY_SPEC_TAG' => ProcessHelpers.current_tag, 'OUT' => dir }
  end

  # Writes a batch script that runs `command`. It sets PATH and RUBYLIB
  # itself: sbatch --export=NONE, like this spec's bare submission, drops
  # them.
  def batch_script(command)
    path = File.join(dir, 'job.sh')
    File.write(path, <<~SH)
      #!/bin/sh
      export PATH=#{File.dirname(RbConfig.ruby)}:/usr/bin:/bin
      export RUBYLIB=#{File.join(ROOT, 'lib')}
      exec #{command}
    SH
    path
  end

  # Waits until the block is true; fails with the cluster's logs when
  # `job` leaves the queue first or after `timeout` seconds.
  def wait_while_queued(job, what, timeout: 30)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until yield
      ended = cluster.squeue(job).empty?
      if ended || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        raise "#{ended ? "#{job} ended" : "#{timeout}s passed"} before #{what}\n#{cluster.logs}"
      end

      sleep 0.02
    end
  end

  it 'runs every task of a 4-task array' do
    code = 'File.write(ENV["OUT"] + "/task-" + ENV["SLURM_ARRAY_TASK_ID"], ENV["SLURM_ARRAY_JOB_ID"])'
    job = cluster.sbatch(batch_script("ruby -e '#{code}'"), '--array=1-4', env: job_env)
    cluster.wait_for_jobs(job)

    expect(cluster.task_states(job)).to eq((1..4).to_h { |id| [id, 'COMPLETED 0:0'] })
    expect((1..4).map { |id| File.read(File.join(dir, "task-#{id}")) }).to all(eq(job))
  end

  describe 'a cancelled and requeued array task' do
    # 1,000 items of 3 ms; each perform appends the Slurm restart count to
    # the item's marker file. Array task 3 (shard 2 of 4) holds in its first
    # run once it performed its first 100 items, so that it is mid-run
    # when cancelled.
    def write_task
      FileUtils.mkdir_p(File.join(dir, 'items'))
      write_script(dir, 'night.rb', <<~RUBY)
        class Night
          include Divvy::Parallelizable

          def dispatch
            1000.times { |item| yield item }
          end

          def perform(item)
            first_run = ENV['SLURM_RESTART_COUNT'].nil?
            sleep(ENV['SLURM_ARRAY_TASK_ID'] == '3' && first_run && item / 4 >= 100 ? 600 : 0.003)
            File.write(File.join(ENV['OUT'], 'items', item.to_s), "\#{ENV.fetch('SLURM_RESTART_COUNT', 0)}\\n", mode: 'a')
          end
        end
      RUBY
    end

    # The joblog's records, each a Hash of the header's column names; the
    # first line must be the header.
    def records(log)
      header, *lines = File.readlines(log, chomp: true)
      expect(header).to start_with("Seq\t")
      columns = header.split("\t")
      lines.reject { |line| line.start_with?("Seq\t") }.map { |line| columns.zip(line.split("\t")).to_h }
    end

    # The items a joblog records as performed: Seq counts dispatch
    # positions from 1, and item N is dispatched at position N + 1.
    def performed(log)
      records(log).select { |record| record['Outcome'] == 'performed' }.map { |record| record['Seq'].to_i - 1 }
    end

    # How many whole lines of `log` record an item as performed (for
    # polling while divvy writes it).
    def performed_lines(log)
      File.read(log).lines.count { |line| line.end_with?("\n") && line.include?("\tperformed\t") }
    rescue Errno::ENOENT
      0
    end

    # Item => the restart counts of the runs that performed it.
    def markers
      Dir[File.join(dir, 'items', '*')].to_h { |file| [File.basename(file).to_i, File.read(file).split.map(&:to_i)] }
    end

    it 'resumes its own slice, and the four logs record each item exactly once as performed' do
      script = write_task
      command = "ruby #{ROOT}/exe/divvy --shard auto --joblog #{dir}/run.log --resume -n 2 #{script}"
      job = cluster.sbatch(batch_script(command), '--array=1-4', env: job_env)
      victim_log = File.join(dir, 'run.2-of-4.log')

      wait_while_queued("#{job}_3", 'task 3 logged its first 100 items') { performed_lines(victim_log) >= 100 }
      cluster.run('scancel', "#{job}_3")
      cluster.wait_for_jobs("#{job}_3")
      logged_before_cancel = performed(victim_log)
      cluster.requeue("#{job}_3")
      cluster.wait_for_jobs(job)

      states = cluster.task_states(job)
      expect(states).to eq((1..4).to_h { |id| [id, 'COMPLETED 0:0'] }), -> { "#{states}\n#{cluster.logs}" }
      logs = (0..3).to_h { |shard| [shard, performed(File.join(dir, "run.#{shard}-of-4.log"))] }
      logs.each { |shard, items| expect(items.map { |item| item % 4 }.uniq).to eq([shard]) }
      expect(logs.values.flatten.tally.select { |_, count| count > 1 }).to be_empty
      expect(logs.values.flatten.sort).to eq((0...1000).to_a)

      performed_by_run = markers
      expect(performed_by_run.keys.sort).to eq((0...1000).to_a)
      expect(performed_by_run.select { |_, runs| runs.size > 1 }).to be_empty # no item performed twice
      rerun = performed_by_run.select { |_, runs| runs == [1] }.keys
      expect(logged_before_cancel.sort).to eq((0...100).map { |slot| (slot * 4) + 2 })
      expect(rerun.sort).to eq((100...250).map { |slot| (slot * 4) + 2 })
    end
  end
end
