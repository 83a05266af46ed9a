# frozen_string_literal: true

# Divvy.each and Divvy.map (and their _with_index forms): a block run on
# each item of an enumerable in forked workers.
module Divvy
  # Runs a block on each item of an enumerable in forked workers: the task
  # behind Divvy.each (no results) and Divvy.map (results in input order).
  # Runs in the master; the block runs in the workers, with the locals it
  # captured (the workers are forks).
  #
  # An item is what `each` yielded: `["x"]` for `yield "x"`, `["x", 7]` for
  # `yield "x", 7`; the _with_index forms put the item's position first.
  # The block gets what `each` yielded, as a block given to `each` would.
  class Each
    include Parallelizable

    # Runs in the master.
    #
    # @param enumerable [#each] the items; only #each is called, so lazy and
    #   endless sources stream
    # @param block [Proc] what to do with one item, in a worker
    # @param with_index [Boolean] pass the block the item and its position
    #   (as `each_with_index` does) instead of what `each` yielded
    def initialize(enumerable, block, with_index: false)
      super()
      @enumerable = enumerable
      @block = block
      @with_index = with_index
      @hooks = {}
      @failures = []
      @broken = false
    end

    # Sets the callables run by {#after_fork} and {#before_exit}. Runs in
    # the master, before the run.
    #
    # @param hooks [Hash{Symbol => #call, nil}] `after_fork:` and
    #   `before_exit:`, each taking no argument or the {Divvy::Worker}
    # @return [void]
    # @raise [Divvy::Error] for a hook that cannot be called that way
    def hooks=(hooks)
      hooks.each do |name, hook|
        next if hook.nil?
        next if hook.respond_to?(:call) && (-2..1).cover?(Each.arity(hook))

        raise Error, "#{name}: must be a callable taking no argument or the Divvy::Worker, not #{hook.inspect}"
      end
      @hooks = hooks
    end

    # @return [Integer, nil] the number of items when the enumerable knows it
    #   (for the progress bar and the process title)
    def total
      @enumerable.size if @enumerable.respond_to?(:size)
    end

    # Yields each item: what `each` yielded, after its position for the
    # _with_index forms. Runs in the master. Only #each is called, so any
    # object with #each will do.
    #
    # @yieldparam values [Array<Object>] the item's position (_with_index
    #   forms only), then what `each` yielded
    # @return [void]
    def dispatch(&)
      return @enumerable.each(&) unless @with_index

      position = -1
      @enumerable.each { |*values| yield position += 1, *values }
    end

    # Calls the block on one item. Runs in a worker.
    #
    # @param values [Array<Object>] what `each` yielded for it, after its
    #   position for the _with_index forms
    # @return [Object] the block's result
    def perform(*values)
      return @block.call(*values) unless @with_index

      # Like Enumerable#each_with_index: several values arrive as one Array.
      position, *values = values
      @block.call(values.size > 1 ? values : values.first, position)
    end

    # Runs the `after_fork:` hook, in a worker right after the fork.
    #
    # @param worker [Divvy::Worker] this worker
    # @return [void]
    def after_fork(worker)
      call_hook(:after_fork, worker)
    end

    # Runs the `before_exit:` hook, in a worker before it leaves.
    #
    # @param worker [Divvy::Worker] this worker
    # @return [void]
    def before_exit(worker)
      call_hook(:before_exit, worker)
    end

    # Collects a finally failed item; the run's halt policy (by default
    # `soon,fail=1`) decides whether the run goes on. Runs in the master.
    #
    # @param error [Divvy::TaskError] how the item failed
    # @return [void]
    def failed(error, *_item)
      @failures << error
    end

    # Keeps the value of the first {Divvy::Break} a block raised; the
    # master has stopped dispatching. Runs in the master.
    #
    # @param value [Object] the Break's value (nil without one, or when
    #   Marshal could not dump it)
    # @return [void]
    def broke(value, *_item)
      return if @broken

      @broken = true
      @break_value = value
    end

    # What Divvy.each returns once the run is over. Runs in the master.
    #
    # @return [Object] the first Break's value when a block raised
    #   {Divvy::Break}, the enumerable otherwise
    # @raise [Divvy::TaskError] the first failure (see {#raise_failures})
    def outcome
      raise_failures
      @broken ? @break_value : @enumerable
    end

    # @return [nil] Divvy.each gathers no results
    def results
      nil
    end

    # @return [Hash] the keywords this task needs of `Divvy::Master.new`
    def master_options
      {}
    end

    # What the workers call `call` on with each item's values, in place of
    # #perform: the block itself, which spares a splat per item, or
    # #perform for the _with_index forms. Runs in the master, before the
    # workers fork.
    #
    # @return [#call]
    def divvy_performer
      @with_index ? method(:perform) : @block
    end

    # Checks the keywords a run of this task is made with. Runs in the
    # master, before the run.
    #
    # @param _options [Hash] the keywords for `Divvy::Master.new`
    # @return [void]
    def check(_options); end

    # The arity of a callable: a Proc's or Method's own, or its #call's.
    #
    # @param callable [#call]
    # @return [Integer]
    def self.arity(callable)
      callable.respond_to?(:arity) ? callable.arity : callable.method(:call).arity
    end

    private

    # Raises the first failure, with the others attached as its #others and
    # the results gathered as its #results; returns nil when nothing failed.
    def raise_failures
      first, *others = @failures
      return unless first

      first.instance_variable_set(:@others, others)
      first.instance_variable_set(:@results, results)
      raise first
    end

    def call_hook(name, worker)
      hook = @hooks[name]
      return unless hook

      Each.arity(hook).zero? ? hook.call : hook.call(worker)
    end
  end

  # Divvy.each's task with results: each item's result comes back to the
  # master, which stores it at the item's position (its dispatch index)
  # without calling Ruby for it.
  class Map < Each
    # @return [Array] the results gathered, at their items' positions; nil
    #   at the positions of items not performed
    attr_reader :results

    # Runs in the master.
    #
    # @param (see Each#initialize)
    def initialize(enumerable, block, with_index: false)
      super
      @results = []
    end

    # @return [Hash] `results:`, the Array the master stores results in
    def master_options
      { results: @results }
    end

    # Refuses `resume:`: a job log keeps no results, so the items a resumed
    # run skips would have none. Runs in the master, before the run.
    #
    # @param options [Hash] the keywords for `Divvy::Master.new`
    # @return [void]
    # @raise [Divvy::Error] with `resume:`
    def check(options)
      return unless options[:resume]

      raise Error, 'Divvy.map cannot resume: a job log keeps no results, so the items it skipped would have ' \
                   'none; use Divvy.each with resume:, or Divvy.map with joblog: alone'
    end

    # What Divvy.map returns once the run is over. Runs in the master.
    #
    # @return [Object] the first Break's value when a block raised
    #   {Divvy::Break} with a value (not nil), the results otherwise
    # @raise [Divvy::TaskError] the first failure, with the results
    def outcome
      value = super
      @broken && !value.nil? ? value : @results
    end
  end

  # The keywords of Divvy.map and Divvy.each that name hooks.
  HOOKS = %i[after_fork before_exit].freeze

  private_constant :Each, :Map, :HOOKS

  class << self
    # Calls the block with each item of `enumerable`, in `workers` forked
    # processes. Runs in the master.
    #
    # The block gets what `each` yielded, as with Enumerable#each: both
    # values for `hash.each` or `list.each_with_index` (`|key, value|`), an
    # Array for `each_slice` (`|slice|` or `|a, b|`).
    #
    # @param enumerable [#each] the items; lazy and endless sources stream
    # @param options [Hash] the keywords below, and those of
    #   `Divvy::Master.new` (retries:, timeout:, max_tasks:,
    #   max_memory:, shard:, progress:, halt:, joblog:, resume:;
    #   Divvy.map refuses resume:, see {Divvy.map})
    # @option options [Integer] :workers (Divvy.processors) how many worker
    #   processes
    # @option options [Boolean] :verbose (false) log worker starts, exits
    #   and retries
    # @option options [String, nil] :halt ('soon,fail=1') when to end the
    #   run early, as `--halt` takes it; nil or 'never' runs every item
    # @option options [#call] :after_fork called in each worker right after
    #   the fork, with the {Divvy::Worker} when it takes an argument
    # @option options [#call] :before_exit called in each worker before it
    #   leaves, with the {Divvy::Worker} when it takes an argument
    # @yieldparam values [Array<Object>] what `each` yielded, in a worker
    # @return [Object] `enumerable`; or, when a block raised {Divvy::Break},
    #   that Break's value (nil without one)
    # @raise [Divvy::TaskError] the first item that finally failed (the
    #   others in its #others), once the items in flight finished (or were
    #   abandoned, under a `now` halt)
    # @raise [Divvy::Error] for a hook that is not a callable taking no
    #   argument or the worker, and what `Divvy::Master.new` raises
    # @raise [Divvy::Master::Shutdown] when a signal stopped the run (not a
    #   StandardError)
    # @raise [ArgumentError] without a block
    def each(enumerable, **options, &block)
      run(Each.new(enumerable, block || raise(ArgumentError, 'Divvy.each needs a block')), **options)
    end

    # Like {Divvy.each}, but the block gets each item and its position, as
    # with Enumerable#each_with_index (several values `each` yielded arrive
    # as one Array). Runs in the master.
    #
    # @param (see Divvy.each)
    # @option (see Divvy.each)
    # @yieldparam item [Object] one item, in a worker
    # @yieldparam index [Integer] its position in `enumerable`
    # @return (see Divvy.each)
    # @raise (see Divvy.each)
    def each_with_index(enumerable, **options, &block)
      block || raise(ArgumentError, 'Divvy.each_with_index needs a block')
      run(Each.new(enumerable, block, with_index: true), **options)
    end

    # Like {Divvy.each}, but returns the block's results in input order.
    # Each result travels back with Marshal. Runs in the master.
    #
    # `joblog:` records each item as Divvy.each does, but `resume:` is
    # refused: a job log keeps no results, so the items a resumed run
    # skipped would have none. Resume a Divvy.each whose block writes its
    # results somewhere that lasts instead.
    #
    # @param (see Divvy.each)
    # @option (see Divvy.each)
    # @yieldparam values [Array<Object>] what `each` yielded, in a worker
    # @yieldreturn [Object] the item's result
    # @return [Object] the results, in input order; or, when a block raised
    #   {Divvy::Break}, that Break's value, or when it has none (nil), the
    #   results gathered so far, with nil at the positions of items not
    #   performed
    # @raise [Divvy::TaskError] the first item that finally failed (the
    #   others in its #others, the results gathered in its #results), once
    #   the items in flight finished
    # @raise (see Divvy.each)
    # @raise [Divvy::Error] with `resume:`
    def map(enumerable, **options, &block)
      run(Map.new(enumerable, block || raise(ArgumentError, 'Divvy.map needs a block')), **options)
    end

    # Like {Divvy.map}, but the block gets each item and its position, as
    # with Enumerable#each_with_index. Runs in the master.
    #
    # @param (see Divvy.each)
    # @option (see Divvy.each)
    # @yieldparam item [Object] one item, in a worker
    # @yieldparam index [Integer] its position in `enumerable`
    # @yieldreturn [Object] the item's result
    # @return (see Divvy.map)
    # @raise (see Divvy.map)
    def map_with_index(enumerable, **options, &block)
      block || raise(ArgumentError, 'Divvy.map_with_index needs a block')
      run(Map.new(enumerable, block, with_index: true), **options)
    end

    private

    # Runs `task` on a master made with `options`, the hooks taken out, and
    # returns the task's outcome. The first item that finally fails halts
    # the run soon, unless `halt:` says otherwise.
    def run(task, workers: Divvy.processors, verbose: false, halt: 'soon,fail=1', **options)
      task.hooks = options.slice(*HOOKS)
      task.check(options)
      Master.new(task, workers, verbose, halt: halt, **options.except(*HOOKS), **task.master_options).run
      task.outcome
    end
  end
end
