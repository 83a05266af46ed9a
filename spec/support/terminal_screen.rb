# frozen_string_literal: true

require 'io/console'
require 'pty'
require 'strscan'
require 'timeout'

# A terminal of `width` columns, as far as divvy's progress bar needs one:
# it plays back what a program wrote (printable characters with automatic
# wrapping at the last column, carriage return, line feed, cursor up and
# down, erasing a line or the rest of the screen) and tells what is left on
# the screen, scrollback included. Specs use it to see what a person would.
class TerminalScreen
  # The control sequences understood: CSI with numbers, then a letter.
  CSI = /\e\[([0-9;]*)([A-Za-z])/

  # Runs `command` with `env` on a new terminal `width` columns wide, its
  # stdin, stdout and stderr, and returns all it wrote there once it closed
  # the terminal. Fails after `timeout` seconds.
  #
  # @return [String] the bytes written to the terminal
  def self.run(env, command, width:, timeout:)
    terminal, child_side = PTY.open
    terminal.winsize = [24, width]
    pid = Process.spawn(env, *command, in: child_side, out: child_side, err: child_side)
    child_side.close
    output = +''
    Timeout.timeout(timeout) { read_until_closed(terminal, output) }
    Process.wait(pid)
    output
  ensure
    terminal&.close
  end

  # Reads `terminal` into `output` until the other side is closed.
  def self.read_until_closed(terminal, output)
    loop { output << terminal.readpartial(4096) }
  rescue Errno::EIO, EOFError
    nil # the child closed the terminal
  end

  # @param width [Integer] the number of columns
  def initialize(width)
    @width = width
    @rows = [[]]
    @row = 0
    @column = 0
    @wrap_pending = false
  end

  # Plays back `output`, as read from the terminal's master side.
  #
  # @param output [String] bytes the program wrote (UTF-8)
  # @return [self]
  def play(output)
    scanner = StringScanner.new(output.dup.force_encoding('UTF-8'))
    until scanner.eos?
      if scanner.scan(CSI)
        control(scanner[2], scanner[1])
      else
        write(scanner.getch)
      end
    end
    self
  end

  # @return [Array<String>] every row, trailing blanks removed
  def rows
    @rows.map { |cells| cells.join.rstrip }
  end

  private

  def write(char)
    case char
    when "\r" then carriage_return
    when "\n" then line_feed
    when "\e" then nil # an escape this screen does not know: ignored
    else put(char)
    end
  end

  def carriage_return
    @column = 0
    @wrap_pending = false
  end

  def line_feed
    @row += 1
    @rows << [] while @rows.size <= @row
    @wrap_pending = false
  end

  # Puts a printable character at the cursor; past the last column the
  # terminal waits for the next character before it wraps, as xterm does.
  def put(char)
    if @wrap_pending
      carriage_return
      line_feed
    end
    cells = @rows[@row]
    cells << ' ' while cells.size < @column
    cells[@column] = char
    if @column == @width - 1
      @wrap_pending = true
    else
      @column += 1
    end
  end

  def control(letter, numbers)
    count = [numbers.to_i, 1].max
    @wrap_pending = false
    case letter
    when 'A' then @row = [@row - count, 0].max
    when 'B' then (count.times { line_feed })
    when 'K' then erase_in_line(numbers.to_i)
    when 'J' then erase_below if numbers.to_i.zero?
    end
  end

  def erase_in_line(mode)
    cells = @rows[@row]
    case mode
    when 0 then cells.slice!(@column..)
    when 1 then (0..@column).each { |i| cells[i] = ' ' if i < cells.size }
    when 2 then cells.clear
    end
  end

  def erase_below
    erase_in_line(0)
    @rows.slice!((@row + 1)..)
  end
end
