# frozen_string_literal: true

require_relative 'spec_helper'
require 'divvy'

# Divvy::Shard: the shard a Slurm array task or a Kubernetes indexed Job
# gets from its environment (`--shard auto`, `shard: :auto`), and the
# `--shard I/N` argument.
RSpec.describe Divvy::Shard do
  # The environment Slurm gives the task `id` of `--array=min-max:step`.
  def slurm(id, min, max, step = 1, count: ((max - min) / step) + 1)
    { 'SLURM_ARRAY_TASK_ID' => id, 'SLURM_ARRAY_TASK_MIN' => min, 'SLURM_ARRAY_TASK_MAX' => max,
      'SLURM_ARRAY_TASK_STEP' => step, 'SLURM_ARRAY_TASK_COUNT' => count }.transform_values(&:to_s)
  end

  def shard(env)
    described_class.from_scheduler(env)
  end

  def expect_error(env, message)
    expect { shard(env) }.to raise_error(Divvy::Error, message)
  end

  describe '.from_scheduler in a Slurm array task' do
    it 'maps --array=1-4 to shards 0..3 of 4' do
      expect((1..4).map { |id| shard(slurm(id, 1, 4)) }).to eq([[0, 4], [1, 4], [2, 4], [3, 4]])
    end

    it 'maps --array=0-12:3 to shards 0..4 of 5' do
      expect([0, 3, 6, 9, 12].map { |id| shard(slurm(id, 0, 12, 3)) }).to eq((0..4).map { |index| [index, 5] })
    end

    it 'maps --array=5-5 to shard 0 of 1' do
      expect(shard(slurm(5, 5, 5))).to eq([0, 1])
    end

    it 'takes the count from SLURM_ARRAY_TASK_COUNT alone' do
      env = slurm(7, 1, 13, 3).except('SLURM_ARRAY_TASK_MAX')
      expect(shard(env)).to eq([2, 5])
    end

    it 'computes the count from MIN, MAX and STEP where the count is missing' do
      env = slurm(7, 1, 13, 3).except('SLURM_ARRAY_TASK_COUNT')
      expect(shard(env)).to eq([2, 5])
    end

    it 'takes MIN as 0 and STEP as 1 when they are missing' do
      expect(shard('SLURM_ARRAY_TASK_ID' => '3', 'SLURM_ARRAY_TASK_COUNT' => '8')).to eq([3, 8])
      expect(shard('SLURM_ARRAY_TASK_ID' => '3', 'SLURM_ARRAY_TASK_MAX' => '7')).to eq([3, 8])
    end

    it 'treats an empty variable as unset' do
      env = slurm(7, 1, 13, 3).merge('SLURM_ARRAY_TASK_COUNT' => '')
      expect(shard(env)).to eq([2, 5])
      expect_error(slurm(7, 1, 13, 3).merge('SLURM_ARRAY_TASK_ID' => ''), /no shard from the scheduler/)
    end

    it 'reads the real ENV by default' do
      saved = ENV.to_h
      ENV.update(slurm(2, 1, 4))
      expect(described_class.from_scheduler).to eq([1, 4])
    ensure
      ENV.replace(saved)
    end

    it 'prefers Slurm when a Kubernetes index is also set' do
      expect(shard(slurm(2, 1, 4).merge('JOB_COMPLETION_INDEX' => '0', 'DIVVY_SHARDS' => '2'))).to eq([1, 4])
    end

    it 'rejects an array with neither a count nor a MAX' do
      expect_error({ 'SLURM_ARRAY_TASK_ID' => '1', 'SLURM_ARRAY_TASK_MIN' => '1' },
                   'SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT or SLURM_ARRAY_TASK_MAX')
    end

    %w[SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_MAX SLURM_ARRAY_TASK_STEP
       SLURM_ARRAY_TASK_COUNT].each do |name|
      ['x', '-1', '1.5', ' 2', '2 ', '0x10', '1e3'].each do |bad|
        it "rejects #{name}=#{bad.inspect}" do
          expect_error(slurm(2, 1, 4).merge(name => bad), "#{name} is #{bad.inspect}, not a whole number")
        end
      end

      it "rejects a #{name} past #{Divvy::Shard::MAX_COUNT}" do
        expect_error(slurm(2, 1, 4).merge(name => '9223372036854775808'),
                     "#{name} is 9223372036854775808, larger than 9223372036854775807")
      end
    end

    it 'rejects STEP 0' do
      env = slurm(2, 1, 4).merge('SLURM_ARRAY_TASK_STEP' => '0')
      expect_error(env, 'SLURM_ARRAY_TASK_STEP is 0, must be at least 1')
    end

    it 'rejects COUNT 0' do
      expect_error(slurm(2, 1, 4, count: 0), 'SLURM_ARRAY_TASK_COUNT is 0, must be at least 1')
    end

    it 'rejects MAX below MIN' do
      expect_error(slurm(2, 5, 4, count: 1), 'SLURM_ARRAY_TASK_MAX 4 is below SLURM_ARRAY_TASK_MIN 5')
    end

    it 'rejects an id below MIN, above MAX, or between the steps' do
      expect_error(slurm(0, 1, 4), /\ASLURM_ARRAY_TASK_ID 0 is not one of the 4 ids from SLURM_ARRAY_TASK_MIN 1 by/)
      expect_error(slurm(5, 1, 4), /\ASLURM_ARRAY_TASK_ID 5 is not one of the 4 ids/)
      expect_error(slurm(4, 0, 12, 3), /\ASLURM_ARRAY_TASK_ID 4 is not one of the 5 ids .* SLURM_ARRAY_TASK_STEP 3\z/)
      expect_error({ 'SLURM_ARRAY_TASK_ID' => '8', 'SLURM_ARRAY_TASK_COUNT' => '8' }, /ID 8 is not one of the 8 ids/)
    end

    it 'rejects the unevenly spaced ids Slurm gives --array=1,3,7 and --array=2,4,6,7-9:2' do
      # What Slurm 22.05 exports for these arrays, as seen on a real cluster.
      expect_error(slurm(3, 1, 7, 1, count: 3),
                   'Slurm array ids are not evenly spaced (SLURM_ARRAY_TASK_MIN 1, MAX 7, STEP 1, COUNT 3): ' \
                   'use --array=A-B or A-B:S, or give the shard as I/N')
      expect_error(slurm(4, 2, 9, 2, count: 5), /not evenly spaced \(.* MAX 9, STEP 2, COUNT 5\)/)
      expect_error(slurm(4, 2, 9, 2).except('SLURM_ARRAY_TASK_COUNT'), /not evenly spaced \(.* COUNT unset\)/)
    end
  end

  describe '.from_scheduler in a Kubernetes indexed Job' do
    it 'reads JOB_COMPLETION_INDEX with DIVVY_SHARDS' do
      expect((0..2).map { |index| shard('JOB_COMPLETION_INDEX' => index.to_s, 'DIVVY_SHARDS' => '3') })
        .to eq([[0, 3], [1, 3], [2, 3]])
    end

    it 'needs DIVVY_SHARDS' do
      expect_error({ 'JOB_COMPLETION_INDEX' => '1' },
                   "JOB_COMPLETION_INDEX is set but DIVVY_SHARDS is not: set it to the Job's completions")
      expect_error({ 'JOB_COMPLETION_INDEX' => '1', 'DIVVY_SHARDS' => '' }, /DIVVY_SHARDS is not/)
    end

    %w[JOB_COMPLETION_INDEX DIVVY_SHARDS].each do |name|
      it "rejects a malformed #{name}" do
        env = { 'JOB_COMPLETION_INDEX' => '1', 'DIVVY_SHARDS' => '3' }.merge(name => 'three')
        expect_error(env, "#{name} is \"three\", not a whole number")
      end

      it "rejects a #{name} past #{Divvy::Shard::MAX_COUNT}" do
        env = { 'JOB_COMPLETION_INDEX' => '1', 'DIVVY_SHARDS' => '3' }.merge(name => '1' * 20)
        expect_error(env, "#{name} is #{'1' * 20}, larger than 9223372036854775807")
      end
    end

    it 'rejects an index not below DIVVY_SHARDS, and DIVVY_SHARDS 0' do
      expect_error({ 'JOB_COMPLETION_INDEX' => '3', 'DIVVY_SHARDS' => '3' },
                   'JOB_COMPLETION_INDEX 3 must be below DIVVY_SHARDS 3')
      expect_error({ 'JOB_COMPLETION_INDEX' => '0', 'DIVVY_SHARDS' => '0' }, 'DIVVY_SHARDS is 0, must be at least 1')
    end
  end

  describe '.from_scheduler with no scheduler' do
    it 'says which variables it looked for' do
      expect_error({ 'DIVVY_SHARDS' => '4', 'SLURM_JOB_ID' => '12' },
                   'no shard from the scheduler: neither SLURM_ARRAY_TASK_ID (a Slurm array task) ' \
                   'nor JOB_COMPLETION_INDEX (a Kubernetes indexed Job) is set')
    end
  end

  describe '.parse' do
    it 'reads I/N' do
      expect(described_class.parse('0/1')).to eq([0, 1])
      expect(described_class.parse('9223372036854775806/9223372036854775807')).to eq([(2**63) - 2, (2**63) - 1])
    end

    it 'reads auto from the scheduler' do
      expect(described_class.parse('auto', slurm(4, 1, 4))).to eq([3, 4])
    end

    it 'rejects anything else' do
      ['', '2', '3/3', '-1/3', '1/0', '1/3/4', 'a/b', 'AUTO', ' 1/3'].each do |text|
        expect { described_class.parse(text) }.to raise_error(Divvy::Error, 'must be I/N with 0 <= I < N, or auto')
      end
      expect { described_class.parse("1/#{'9' * 20}") }
        .to raise_error(Divvy::Error, 'N must be at most 9223372036854775807')
    end
  end

  describe 'shard: :auto' do
    it 'makes Divvy.map perform only the scheduler shard' do
      env = { 'JOB_COMPLETION_INDEX' => '1', 'DIVVY_SHARDS' => '3' }
      result = ruby_code('require "divvy"; p Divvy.map(0...9, workers: 2, shard: :auto) { |i| i * 10 }', env: env)
      expect(result.stdout).to eq("[nil, 10, nil, nil, 40, nil, nil, 70]\n")
    end

    it 'raises the scheduler error from Divvy::Master.new' do
      task = Class.new do
        include Divvy::Parallelizable
        def dispatch; end
        def perform; end
      end.new
      saved = ENV.to_h
      %w[SLURM_ARRAY_TASK_ID JOB_COMPLETION_INDEX].each { |name| ENV.delete(name) }
      expect { Divvy::Master.new(task, 1, shard: :auto) }.to raise_error(Divvy::Error, /\Ano shard from the scheduler/)
      expect { Divvy::Master.new(task, 1, shard: :other) }
        .to raise_error(Divvy::Error, 'shard must be [index, count] with 0 <= index < count, or :auto, got :other')
    ensure
      ENV.replace(saved)
    end
  end

  describe 'divvy --shard' do
    let(:script) { File.join(ROOT, 'examples', 'danceparty.rb') }

    it 'runs the Slurm array task shard with --shard auto' do
      result = divvy('-n', 2, '--shard', 'auto', script, 8, env: slurm(3, 1, 4))
      expect(result.status).to be_success
      expect(result.stdout.lines.drop(1).map { |line| line.split[1].to_i }.sort).to eq([2, 6])
    end

    it 'is a usage error without a scheduler' do
      result = divvy('--shard', 'auto', script, env: { 'SLURM_ARRAY_TASK_ID' => nil, 'JOB_COMPLETION_INDEX' => nil })
      expect(result.exitstatus).to eq(2)
      expect(result.stderr.lines.first).to eq('divvy: invalid --shard auto: no shard from the scheduler: neither ' \
                                              'SLURM_ARRAY_TASK_ID (a Slurm array task) nor JOB_COMPLETION_INDEX ' \
                                              "(a Kubernetes indexed Job) is set\n")
      expect(result.stdout).to be_empty
    end

    it 'is a usage error for a malformed scheduler variable' do
      result = divvy('--shard', 'auto', script, env: slurm(3, 1, 4).merge('SLURM_ARRAY_TASK_COUNT' => 'four'))
      expect(result.exitstatus).to eq(2)
      expect(result.stderr.lines.first).to eq("divvy: invalid --shard auto: SLURM_ARRAY_TASK_COUNT is \"four\", not a whole number\n")
    end

    it 'is a usage error for 20-digit numbers' do
      %w[1/99999999999999999999 99999999999999999998/99999999999999999999].each do |shard|
        result = divvy('--shard', shard, script)
        expect(result.exitstatus).to eq(2)
        expect(result.stderr.lines.first).to eq("divvy: invalid --shard #{shard}: N must be at most 9223372036854775807\n")
      end
    end
  end
end
