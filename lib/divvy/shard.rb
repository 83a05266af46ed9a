# frozen_string_literal: true

module Divvy
  # Which shard of a run this process is: given as `--shard I/N`, or read
  # from the cluster scheduler that started it (`--shard auto` on the
  # command line, `shard: :auto` for {Divvy::Master#initialize},
  # {Divvy.map} and {Divvy.each}). A shard is
  # `[index, count]`: the process performs the items whose dispatch position
  # modulo count is index, so count processes with indexes 0...count
  # perform every item exactly once. Runs in the master. See
  # docs/CLUSTERS.md.
  #
  # Read from the environment, in this order (a variable set to the empty
  # string counts as unset):
  #
  # - a Slurm array task: `SLURM_ARRAY_TASK_ID`, with
  #   `SLURM_ARRAY_TASK_MIN` (default 0) and `SLURM_ARRAY_TASK_STEP`
  #   (default 1) mapping the task id to a 0-based index
  #   (`--array=1-4` gives 0..3, `--array=0-12:3` gives 0..4), and the count
  #   from `SLURM_ARRAY_TASK_COUNT`, or from `SLURM_ARRAY_TASK_MAX` where
  #   the count is missing. The ids must be evenly spaced: `--array=1,3,7`
  #   cannot be mapped and raises.
  # - a Kubernetes indexed Job: `JOB_COMPLETION_INDEX`, with the count
  #   from `DIVVY_SHARDS` (Kubernetes does not export the Job's
  #   completions).
  module Shard
    # The largest shard count, and so the largest number read: the native
    # core keeps shards in 63 bits.
    MAX_COUNT = (2**63) - 1

    class << self
      # Reads a `--shard` argument: `"I/N"`, or `"auto"` for
      # {from_scheduler}. Runs in the master.
      #
      # @param text [String] the argument
      # @param env [#[]] the environment, for `"auto"`
      # @return [Array(Integer, Integer)] `[index, count]`, 0 <= index < count
      # @raise [Divvy::Error] one line saying what is wrong with `text`
      #   (which it does not repeat), or what {from_scheduler} raises
      def parse(text, env = ENV)
        text == 'auto' ? from_scheduler(env) : fraction(text)
      end

      # Reads this process's shard from the scheduler's environment. Runs in
      # the master.
      #
      # @param env [#[]] the environment (ENV, or a Hash of Strings)
      # @return [Array(Integer, Integer)] `[index, count]`, 0 <= index < count
      # @raise [Divvy::Error] one line naming the variable at fault, when no
      #   scheduler variable is set or the ones set are malformed,
      #   inconsistent or out of range
      def from_scheduler(env = ENV)
        if present?(env, 'SLURM_ARRAY_TASK_ID')
          slurm(env)
        elsif present?(env, 'JOB_COMPLETION_INDEX')
          kubernetes(env)
        else
          raise Error, 'no shard from the scheduler: neither SLURM_ARRAY_TASK_ID (a Slurm array task) ' \
                       'nor JOB_COMPLETION_INDEX (a Kubernetes indexed Job) is set'
        end
      end

      private

      # Reads `"I/N"`.
      def fraction(text)
        index, count = text.match(%r{\A(\d+)/(\d+)\z})&.captures&.map(&:to_i)
        raise Error, 'must be I/N with 0 <= I < N, or auto' unless index && index < count
        raise Error, "N must be at most #{MAX_COUNT}" if count > MAX_COUNT

        [index, count]
      end

      # The shard of a Slurm array task.
      def slurm(env)
        id = number(env, 'SLURM_ARRAY_TASK_ID')
        min = number(env, 'SLURM_ARRAY_TASK_MIN', 0)
        step = number(env, 'SLURM_ARRAY_TASK_STEP', 1)
        raise Error, "SLURM_ARRAY_TASK_STEP is #{step}, must be at least 1" if step.zero?

        count = slurm_count(env, min, step)
        index, offset = (id - min).divmod(step)
        unless id >= min && offset.zero? && index < count
          raise Error, "SLURM_ARRAY_TASK_ID #{id} is not one of the #{count} ids from " \
                       "SLURM_ARRAY_TASK_MIN #{min} by SLURM_ARRAY_TASK_STEP #{step}"
        end
        [index, count]
      end

      # The number of tasks in the array: SLURM_ARRAY_TASK_COUNT, or the ids
      # from SLURM_ARRAY_TASK_MIN to SLURM_ARRAY_TASK_MAX by the step; both
      # must agree when both are set.
      def slurm_count(env, min, step)
        count = number(env, 'SLURM_ARRAY_TASK_COUNT', nil)&.then { |value| positive(value, 'SLURM_ARRAY_TASK_COUNT') }
        max = number(env, 'SLURM_ARRAY_TASK_MAX', nil)
        return ids_between(min, max, step, count) if max

        count || raise(Error, 'SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT or SLURM_ARRAY_TASK_MAX')
      end

      # The number of ids from `min` to `max` by `step`, when they end on
      # `max` and agree with `count` (nil when unset). Slurm gives a list
      # such as `--array=1,3,7` a MIN, MAX and STEP that do not.
      def ids_between(min, max, step, count)
        raise Error, "SLURM_ARRAY_TASK_MAX #{max} is below SLURM_ARRAY_TASK_MIN #{min}" if max < min

        spanned, rest = (max - min).divmod(step)
        return spanned + 1 if rest.zero? && [nil, spanned + 1].include?(count)

        raise Error, "Slurm array ids are not evenly spaced (SLURM_ARRAY_TASK_MIN #{min}, MAX #{max}, " \
                     "STEP #{step}, COUNT #{count || 'unset'}): use --array=A-B or A-B:S, or give the shard as I/N"
      end

      # The shard of a Kubernetes indexed Job's pod.
      def kubernetes(env)
        index = number(env, 'JOB_COMPLETION_INDEX')
        unless present?(env, 'DIVVY_SHARDS')
          raise Error, "JOB_COMPLETION_INDEX is set but DIVVY_SHARDS is not: set it to the Job's completions"
        end

        count = positive(number(env, 'DIVVY_SHARDS'), 'DIVVY_SHARDS')
        raise Error, "JOB_COMPLETION_INDEX #{index} must be below DIVVY_SHARDS #{count}" unless index < count

        [index, count]
      end

      # True when `name` is set to a non-empty value.
      def present?(env, name)
        !env[name].to_s.empty?
      end

      # The whole number in `name`; `default` when it is unset (raises
      # when there is no default).
      def number(env, name, default = :required)
        text = env[name].to_s
        if text.empty?
          raise Error, "#{name} is not set" if default == :required

          return default
        end
        raise Error, "#{name} is #{text.inspect}, not a whole number" unless text.match?(/\A\d+\z/)

        value = text.to_i
        raise Error, "#{name} is #{text}, larger than #{MAX_COUNT}" if value > MAX_COUNT

        value
      end

      # `count` when it is at least 1.
      def positive(count, name)
        count.positive? ? count : raise(Error, "#{name} is #{count}, must be at least 1")
      end
    end
  end
end
