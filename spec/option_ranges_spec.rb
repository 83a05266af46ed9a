# frozen_string_literal: true

require 'divvy'

# Numbers past what divvy can honour, given to the divvy command and to
# Divvy::Master.new: a usage error (status 2) or a Divvy::Error, in one line
# that does not contradict the value given; never a RangeError, a
# NoMemoryError or a Rust panic.
RSpec.describe 'numbers out of range' do
  let(:script) { File.join(ROOT, 'examples', 'danceparty.rb') }
  let(:task) { Class.new { include Divvy::Parallelizable }.new }
  let(:huge) { 99_999_999_999_999_999_999 }

  describe 'on the command line' do
    {
      %w[--retries 99999999999999999999] => /retries must be at most 4294967295, got 99999999999999999999/,
      %w[-n 99999999999999999999] => /worker count must be at most 10000, got 99999999999999999999/,
      %w[-n 10001] => /worker count must be at most 10000, got 10001/,
      %w[--max-memory 99999999999999999999] => /max_memory must be at most 17592186044415, got 99999999999999999999/,
      %w[--max-tasks 99999999999999999999] => /max_tasks must be at most 9223372036854775807, got 99999999999999999999/,
      %w[--timeout 1e300] => /timeout must be at most 1000000000 seconds, got 1.0e\+300/,
      %w[--timeout 1e-9] => /timeout must be at least 0.001 seconds, got 1.0e-09/
    }.each do |option, message|
      it "rejects #{option.join(' ')} as a usage error, in one line" do
        result = divvy(*option, script, 2)
        expect(result.exitstatus).to eq(2)
        expect(result.stderr.lines.first).to match(/\Adivvy: invalid value: /).and match(message)
        expect(result.stderr.lines.size).to eq(2) # the message, then the usage line
        expect(result.stdout).to be_empty # the script never ran
      end
    end

    it 'rejects --shard 1/99999999999999999999 as a usage error, in one line' do
      result = divvy('--shard', '1/99999999999999999999', script, 2)
      expect(result.exitstatus).to eq(2)
      expect(result.stderr.lines.first)
        .to eq("divvy: invalid --shard 1/99999999999999999999: N must be at most 9223372036854775807\n")
      expect(result.stdout).to be_empty # the script never ran
    end

    it 'still takes the largest values it accepts' do
      result = divvy('--retries', 4_294_967_295, '--max-tasks', 9_223_372_036_854_775_807,
                     '--max-memory', 17_592_186_044_415, '--timeout', 1_000_000_000, '-n', 2, script, 2)
      expect(result.status).to be_success, result.stderr
    end
  end

  describe 'through Divvy::Master.new' do
    def expect_range_error(message, **options)
      expect { Divvy::Master.new(task, options.delete(:workers) || 1, **options) }
        .to raise_error(Divvy::Error) { |error|
          expect(error.message).to match(message)
          expect(error.message).not_to include("\n")
        }
    end

    it 'rejects a worker count it could not allocate' do
      expect_range_error(/\Aworker count must be at most 10000, got 1000000000000\z/, workers: 10**12)
      expect_range_error(/\Aworker count must be at most 10000, got #{huge}\z/, workers: huge)
    end

    it 'rejects retries, max_tasks, max_memory and shard counts past their range' do
      expect_range_error(/\Aretries must be at most 4294967295, got 4294967296\z/, retries: 2**32)
      expect_range_error(/\Aretries must be at most 4294967295, got #{huge}\z/, retries: huge)
      expect_range_error(/\Amax_tasks must be at most 9223372036854775807, got #{2**63}\z/, max_tasks: 2**63)
      expect_range_error(/\Amax_memory must be at most 17592186044415, got 17592186044416\z/, max_memory: 2**44)
      expect_range_error(
        /\Ashard must be \[index, count\] with 0 <= index < count <= 9223372036854775807, got \[1, #{huge}\]\z/,
        shard: [1, huge]
      )
    end

    it 'rejects timeouts it cannot honour, without a panic' do
      expect_range_error(/\Atimeout must be at most 1000000000 seconds, got 1.0e\+19\z/, timeout: 1e19)
      expect_range_error(/\Atimeout must be at most 1000000000 seconds, got Infinity\z/, timeout: Float::INFINITY)
      expect_range_error(/\Atimeout must be at least 0.001 seconds, got 1.0e-09\z/, timeout: 1e-9)
      expect_range_error(/\Atimeout must be a positive number of seconds, got -1\z/, timeout: -1)
    end

    it 'takes the bounds themselves' do
      master = Divvy::Master.new(task, 10_000, retries: (2**32) - 1, timeout: 0.001, max_tasks: (2**63) - 1,
                                               max_memory: (2**44) - 1, shard: [0, (2**63) - 1])
      expect([master.worker_count, master.retries, master.timeout]).to eq([10_000, (2**32) - 1, 0.001])
      expect(Divvy::Master.new(task, 1, timeout: 1_000_000_000).timeout).to eq(1e9)
    end
  end
end
