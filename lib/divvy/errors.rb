# frozen_string_literal: true

module Divvy
  # The base of every error divvy raises: bad arguments, a script with no
  # task, an item Marshal cannot dump, a run started inside a worker.
  class Error < StandardError; end

  # An item that finally failed (after its retries), as handed to the
  # task's `failed` hook in the master and raised by {Divvy.map}. Made by
  # divvy, in the master.
  class TaskError < Error
    # @return [String, nil] the class name of the exception #perform raised;
    #   nil unless it raised
    attr_reader :remote_class
    # @return [String, nil] that exception's message
    attr_reader :remote_message
    # @return [Array<String>, nil] that exception's backtrace, from the
    #   worker's own frames
    attr_reader :remote_backtrace
    # @return [Integer] the number of the worker that last tried the item
    attr_reader :worker_number
    # @return [Integer, nil] that worker's pid
    attr_reader :worker_pid
    # @return [Symbol] why the item failed: `:raised`, `:died`, `:timed_out`,
    #   or `:lost` (performed, but its result died with its worker)
    attr_reader :reason
    # @return [String, nil] the signal that killed the worker ("SIGKILL")
    attr_reader :signal
    # @return [Integer, nil] the status the worker exited with
    attr_reader :exit_status
    # @return [Array] the item's arguments, as `dispatch` yielded them
    attr_reader :args
    # @return [Integer] how many times the item was tried
    attr_reader :attempts
    # @return [Array<TaskError>] the other items that failed meanwhile (set
    #   by {Divvy.map} and {Divvy.each} on the error they raise)
    attr_reader :others
    # @return [Array, nil] on the error {Divvy.map} raises, the results of
    #   the items performed before it gave up (the items in flight
    #   included), at their positions, nil elsewhere; nil on other errors
    attr_reader :results

    # Runs in the master, where divvy makes it.
    #
    # @param message [String] the one-line report of the failure
    # @param details [Hash] the readers' values, each under its name
    #   (`remote_class:`, `worker_number:`, ...); `others:` defaults to []
    def initialize(message = nil, **details)
      super(message)
      DETAILS.each { |name| instance_variable_set(:"@#{name}", details[name]) }
      @others = details.fetch(:others, [])
    end

    # The readers {#initialize} sets from its keywords.
    DETAILS = %i[remote_class remote_message remote_backtrace worker_number worker_pid reason signal
                 exit_status args attempts].freeze
    private_constant :DETAILS
  end

  # A master process and its worker slots; the rest of the class is in the
  # native extension.
  class Master
    # Workers died before they could take items, several times in a row.
    class BootFailure < Error; end

    # A signal stopped the run: raised by {Divvy::Master#run} (and so by
    # {Divvy.map} and {Divvy.each}) after a drain or a stop at once. Like
    # Interrupt, it is a SignalException, not a StandardError, so a plain
    # `rescue => e` lets it through; rescue it by name. Uncaught, it ends the
    # script by its signal, as an uncaught Interrupt does.
    class Shutdown < SignalException
      # Runs in the master, where divvy makes it.
      #
      # @param message [String, nil] what stopped the run, and how far it got
      # @param signo [Integer, nil] the number of the signal; nil when unknown
      # @raise [ArgumentError] for a number that is not a signal's
      def initialize(message = nil, signo: nil)
        super(signo || 0, message)
      end

      # @return [Integer, nil] the number of the signal that stopped the run;
      #   nil when unknown
      def signo
        number = super
        number unless number.zero?
      end
    end
  end

  # Raised by a task's `perform` (or the block of {Divvy.map} or
  # {Divvy.each}) to end the whole run early, like the parallel gem's
  # `Parallel::Break`: the item counts as performed, no new item starts, the
  # items in flight finish, the task's `broke(value, *args)` hook runs in the
  # master, and {Divvy::Master#run} returns normally. `raise Divvy::Break`
  # or `raise Divvy::Break, value`. Raised in a worker.
  class Break < StandardError
    # @return [Object] the value given to {#initialize}; in the master, nil
    #   when Marshal could not dump it
    attr_reader :value

    # @param value [Object] what {Divvy.map} and {Divvy.each} return, or the
    #   `broke` hook receives; it travels to the master with Marshal
    def initialize(value = nil)
      super()
      @value = value
    end
  end
end
