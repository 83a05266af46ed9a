# frozen_string_literal: true

# Divvy.each and Divvy.map: a block run on each item of an enumerable in
# forked workers.
module Divvy
  # Runs a block on each item of an enumerable in forked workers: the task
  # behind Divvy.each (no results) and Divvy.map (results in input order).
  # Runs in the master; the block runs in the workers, with the locals it
  # captured (the workers are forks).
  class Each
    include Parallelizable

    # The master running this task, set by Divvy.each/Divvy.map.
    attr_writer :master

    # @param enumerable [#each] the items; only #each is called, so lazy and
    #   endless sources stream
    # @param block [Proc] what to do with one item, in a worker
    def initialize(enumerable, block)
      super()
      @enumerable = enumerable
      @block = block
      @failures = []
    end

    # @return [Integer, nil] the number of items when the enumerable knows it
    #   (for the progress bar and the process title)
    def total
      @enumerable.size if @enumerable.respond_to?(:size)
    end

    # Yields each item with its position. Runs in the master. Only #each is
    # called, so any object with #each will do.
    #
    # @yieldparam index [Integer] the item's position
    # @yieldparam item [Object] the item
    # @return [void]
    def dispatch
      index = -1
      @enumerable.each { |item| yield index += 1, item }
    end

    # Calls the block on one item. Runs in a worker.
    #
    # @param item [Object] the item
    # @return [Object] the block's result
    def perform(_index, item)
      @block.call(item)
    end

    # Collects a finally failed item and stops dispatching; the items in
    # flight finish. Runs in the master.
    #
    # @param error [Divvy::TaskError] how the item failed
    # @return [void]
    def failed(error, _index, _item)
      @failures << error
      @master&.shutdown
    end

    # Raises the first failure, with the others attached as its #others.
    #
    # @return [nil] when nothing failed
    # @raise [Divvy::TaskError] the first failure
    def raise_failures
      first, *others = @failures
      return unless first

      first.instance_variable_set(:@others, others)
      raise first
    end
  end

  # Divvy.each's task with results: each item's result comes back to the
  # master and lands at the item's position.
  class Map < Each
    # @return [Array] the results, in input order
    attr_reader :results

    # @param enumerable [#each] the items
    # @param block [Proc] what to do with one item, in a worker
    def initialize(enumerable, block)
      super
      @results = []
    end

    # Stores one item's result at its position. Runs in the master.
    #
    # @param result [Object] what the block returned
    # @param index [Integer] the item's position
    # @return [void]
    def completed(result, index, _item)
      @results[index] = result
    end
  end

  private_constant :Each, :Map

  class << self
    # Calls the block with each item of `enumerable`, in `workers` forked
    # processes. Runs in the master.
    #
    # @param enumerable [#each] the items; lazy and endless sources stream
    # @param workers [Integer] how many worker processes
    # @param verbose [Boolean] log worker starts, exits and retries
    # @param options [Hash] the keywords of {Divvy::Master#initialize}
    #   (retries:, timeout:, max_tasks:, max_memory:, shard:, progress:)
    # @yieldparam item [Object] one item, in a worker
    # @return [#each] `enumerable`
    # @raise [Divvy::TaskError] the first item that finally failed (the
    #   others in its #others), once the items in flight finished
    # @raise [ArgumentError] without a block
    def each(enumerable, workers: Divvy.processors, verbose: false, **options, &block)
      run(Each.new(enumerable, block || raise(ArgumentError, 'Divvy.each needs a block')),
          workers, verbose, options)
      enumerable
    end

    # Like {Divvy.each}, but returns the block's results in input order.
    # Each result travels back with Marshal.
    #
    # @param (see Divvy.each)
    # @yieldparam item [Object] one item, in a worker
    # @yieldreturn [Object] the item's result
    # @return [Array] the results, in input order
    # @raise (see Divvy.each)
    def map(enumerable, workers: Divvy.processors, verbose: false, **options, &block)
      task = Map.new(enumerable, block || raise(ArgumentError, 'Divvy.map needs a block'))
      run(task, workers, verbose, options)
      task.results
    end

    private

    def run(task, workers, verbose, options)
      master = Master.new(task, workers, verbose, **options)
      task.master = master
      master.run
      task.raise_failures
    end
  end
end
